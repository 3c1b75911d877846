from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal import key_views, views

_reset = views.password_reset_urls()

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", views.ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password-reset/", _reset["password_reset"], name="password_reset"),
    path("password-reset/sent/", _reset["password_reset_done"], name="password_reset_done"),
    path("password-reset/<uidb64>/<token>/", _reset["password_reset_confirm"], name="password_reset_confirm"),
    path("password-reset/done/", _reset["password_reset_complete"], name="password_reset_complete"),
    path("sip-accounts/", views.account_list, name="account-list"),
    path("sip-accounts/new/", views.account_create, name="account-create"),
    path("sip-accounts/live.json", views.account_registration_states, name="account-registration-states"),
    path("sip-accounts/<int:account_id>/", views.account_detail, name="account-detail"),
    path("sip-accounts/<int:account_id>/edit/", views.account_edit, name="account-edit"),
    path("sip-accounts/<int:account_id>/password/", views.account_set_password, name="account-password"),
    path(
        "sip-accounts/<int:account_id>/password/once/",
        views.account_password_once,
        name="account-password-once",
    ),
    path("sip-accounts/<int:account_id>/codecs/", views.account_codecs, name="account-codecs"),
    path("sip-accounts/<int:account_id>/voicemail/", views.account_voicemail, name="account-voicemail"),
    path(
        "sip-accounts/<int:account_id>/registrations/",
        views.account_registrations,
        name="account-registrations",
    ),
    path("caller-ids/", views.caller_ids, name="caller-ids"),
    path("diagnostics/", views.diagnostics, name="diagnostics"),
    path("api-keys/", key_views.api_key_list, name="api-keys"),
    path("api-keys/<int:key_id>/once/", key_views.api_key_once, name="api-key-once"),
    path("api-keys/<int:key_id>/revoke/", key_views.api_key_revoke, name="api-key-revoke"),
    path("admin/", admin.site.urls),
    path("api/", include("portal.api_urls")),
    path("billing/", include("billing.urls")),
]

handler500 = "portal.views.server_error"
