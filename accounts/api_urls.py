from django.urls import path

from accounts import apis

urlpatterns = [
    path("customers/", apis.CustomerCollectionApi.as_view(), name="customers"),
    path("customers/<id:customer_id>/", apis.CustomerDetailApi.as_view(), name="customer"),
    path("customers/<id:customer_id>/suspend/", apis.CustomerSuspendApi.as_view(), name="customer-suspend"),
    path(
        "customers/<id:customer_id>/reinstate/",
        apis.CustomerReinstateApi.as_view(),
        name="customer-reinstate",
    ),
    path("sip-accounts/", apis.SipAccountCollectionApi.as_view(), name="sip-accounts"),
    path("sip-accounts/<id:account_id>/", apis.SipAccountDetailApi.as_view(), name="sip-account"),
    path(
        "sip-accounts/<id:account_id>/reset-password/",
        apis.SipAccountResetPasswordApi.as_view(),
        name="sip-account-reset-password",
    ),
    path(
        "sip-accounts/<id:account_id>/require-password-change/",
        apis.SipAccountRequirePasswordChangeApi.as_view(),
        name="sip-account-require-password-change",
    ),
    path(
        "sip-accounts/<id:account_id>/codecs/", apis.SipAccountCodecsApi.as_view(), name="sip-account-codecs"
    ),
    path(
        "sip-accounts/<id:account_id>/voicemail/",
        apis.SipAccountVoicemailApi.as_view(),
        name="sip-account-voicemail",
    ),
    path("caller-ids/", apis.CallerIdCollectionApi.as_view(), name="caller-ids"),
    path("caller-ids/<id:caller_id_id>/", apis.CallerIdDetailApi.as_view(), name="caller-id"),
    path(
        "caller-ids/<id:caller_id_id>/approve/", apis.CallerIdApproveApi.as_view(), name="caller-id-approve"
    ),
    path("caller-ids/<id:caller_id_id>/reject/", apis.CallerIdRejectApi.as_view(), name="caller-id-reject"),
    path("api-keys/", apis.ApiKeyCollectionApi.as_view(), name="api-keys"),
    path("api-keys/<id:key_id>/revoke/", apis.ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
]
