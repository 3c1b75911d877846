FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/app PORTAL_VAR_DIR=/var/lib/ninja
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY portal portal
COPY accounts accounts
COPY billing billing
COPY sipsync sipsync
COPY templates templates
COPY manage.py ./
RUN pip install --no-cache-dir -c constraints.txt . && useradd --system ninja && mkdir -p /var/lib/ninja \
    && chown ninja /var/lib/ninja
USER ninja
EXPOSE 8000 5060/udp 5060/tcp 5080
CMD ["gunicorn", "portal.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]
