"""Forms for the customer pages. Validation that has rules lives in the services; these forms
check shapes, and views copy a service's `field_errors` back onto the form so nothing typed is lost."""

from django import forms

from accounts.choices import CallClass, Codec
from accounts.credentials import password_problems
from accounts.models import MAX_VOICEMAIL_MESSAGES

PASSWORD_CHOICES = [
    ("generate", "Generate a strong password for me (recommended)"),
    ("custom", "I will choose the password"),
]


class PasswordChoiceMixin(forms.Form):
    password_mode = forms.ChoiceField(
        label="Password", choices=PASSWORD_CHOICES, initial="generate", widget=forms.RadioSelect
    )
    password = forms.CharField(
        label="Your password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=True, attrs={"autocomplete": "new-password"}),
        help_text="At least 12 characters with lower-case, capital letters and digits, and no spaces "
        "(phones often drop spaces, which ends in '403 Forbidden').",
    )

    def clean(self):
        data = super().clean()
        if data.get("password_mode") == "custom":
            password = data.get("password") or ""
            if not password:
                self.add_error("password", "Enter the password, or let us generate one.")
            else:
                for problem in password_problems(password):
                    self.add_error("password", problem)
        return data

    def chosen_password(self) -> str | None:
        if self.cleaned_data.get("password_mode") == "custom":
            return self.cleaned_data["password"]
        return None


class SipAccountCreateForm(PasswordChoiceMixin):
    extension = forms.CharField(
        label="Extension",
        max_length=8,
        help_text="2 to 8 digits, e.g. 1001",
        widget=forms.TextInput(attrs={"inputmode": "numeric", "pattern": "[0-9]{2,8}"}),
    )
    label = forms.CharField(label="Label", max_length=100, required=False, help_text="e.g. Reception desk")

    field_order = ["extension", "label", "password_mode", "password"]


class SetPasswordForm(PasswordChoiceMixin):
    pass


class SipAccountEditForm(forms.Form):
    label = forms.CharField(label="Label", max_length=100, required=False)
    enabled = forms.BooleanField(label="Enabled (phones may register and call)", required=False)
    call_classes = forms.MultipleChoiceField(
        label="Call permissions",
        choices=CallClass.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Calls to a kind of number not ticked here are refused with 404.",
    )
    max_concurrent_calls = forms.IntegerField(label="Concurrent-call limit", min_value=1, max_value=100)
    forward_all_to = forms.CharField(
        label="Forward all calls to",
        max_length=20,
        required=False,
        help_text="An extension or a telephone number; leave empty for no forwarding.",
    )
    do_not_disturb = forms.BooleanField(label="Do not disturb (decline incoming calls)", required=False)
    default_caller_id = forms.ChoiceField(label="Default caller ID", required=False)

    def __init__(self, *args, caller_ids=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["default_caller_id"].choices = [("", "— none —")] + [
            (str(c.pk), c.number) for c in caller_ids
        ]

    def service_data(self) -> dict:
        data = dict(self.cleaned_data)
        data["default_caller_id"] = int(data["default_caller_id"]) if data.get("default_caller_id") else None
        data["call_classes"] = list(data["call_classes"])
        return data


class CodecForm(forms.Form):
    """One "position" select per catalogue codec; empty means not enabled. Works without JS."""

    def __init__(self, *args, current=(), **kwargs):
        super().__init__(*args, **kwargs)
        positions = [("", "Off")] + [(str(i), str(i)) for i in range(1, len(Codec.values) + 1)]
        for codec, name in Codec.choices:
            initial = str(current.index(codec) + 1) if codec in current else ""
            self.fields[f"pos_{codec}"] = forms.ChoiceField(
                label=name, choices=positions, required=False, initial=initial
            )

    def clean(self):
        data = super().clean()
        chosen = [(int(data[f"pos_{c}"]), c) for c in Codec.values if data.get(f"pos_{c}")]
        positions = [p for p, _ in chosen]
        if len(set(positions)) != len(positions):
            raise forms.ValidationError("Give each enabled codec a different position.")
        if not chosen:
            raise forms.ValidationError("Enable at least one codec, or every call would fail with 488.")
        data["codecs"] = [c for _, c in sorted(chosen)]
        return data

    def codec_fields(self):
        return [self[f"pos_{c}"] for c in Codec.values]


class CallerIdRequestForm(forms.Form):
    number = forms.CharField(
        label="Telephone number",
        max_length=20,
        help_text="Nationally with the leading 0 (e.g. 0115550100) or internationally (+27115550100).",
        widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "tel"}),
    )


class SearchForm(forms.Form):
    q = forms.CharField(label="Search", required=False, max_length=64)


class VoicemailForm(forms.Form):
    new = forms.IntegerField(
        label="New messages", min_value=0, max_value=MAX_VOICEMAIL_MESSAGES, help_text="Not yet listened to."
    )
    old = forms.IntegerField(
        label="Saved messages", min_value=0, max_value=MAX_VOICEMAIL_MESSAGES, help_text="Heard and kept."
    )


OUTCOME_CHOICES = [
    ("", "Any outcome"),
    ("answered", "Answered"),
    ("not_answered", "Not answered (any reason)"),
    ("rejected", "Refused by the service"),
    ("failed", "Failed at the far end"),
    ("cancelled", "Cancelled by the caller"),
]


class CallFilterForm(forms.Form):
    """Filters of the call history (GET). Every field is optional; bad dates are reported."""

    account = forms.TypedChoiceField(label="Extension", required=False, coerce=int, empty_value=None)
    since = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    outcome = forms.ChoiceField(label="Outcome", required=False, choices=OUTCOME_CHOICES)
    number = forms.CharField(
        label="Number",
        required=False,
        max_length=32,
        widget=forms.TextInput(attrs={"inputmode": "tel", "placeholder": "Part of the dialled number"}),
    )

    def __init__(self, *args, accounts=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["account"].choices = [("", "All extensions")] + [
            (pk, f"{extension} · {label}" if label else extension) for pk, extension, label in accounts
        ]

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date is before the start date.")
        return data

    def filters(self) -> dict:
        """The selector's keyword arguments (only valid fields)."""
        data = self.cleaned_data
        return {
            "account_id": data.get("account"),
            "since": data.get("since"),
            "until": data.get("until"),
            "outcome": data.get("outcome") or "",
            "number": data.get("number") or "",
        }


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=100,
        help_text="What will use the key, e.g. “CRM integration”: it tells keys apart when you revoke one.",
    )
