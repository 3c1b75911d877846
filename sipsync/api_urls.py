from django.urls import path

from sipsync import apis

urlpatterns = [
    path(
        "sip-accounts/<id:account_id>/registrations/",
        apis.SipAccountRegistrationsApi.as_view(),
        name="sip-account-registrations",
    ),
    path(
        "sip-accounts/<id:account_id>/subscriptions/",
        apis.SipAccountSubscriptionsApi.as_view(),
        name="sip-account-subscriptions",
    ),
    path(
        "sip-accounts/<id:account_id>/provisioning/",
        apis.SipAccountProvisioningApi.as_view(),
        name="sip-account-provisioning",
    ),
    path("provisioning/", apis.ProvisioningStatusListApi.as_view(), name="provisioning"),
    path("rejection-events/", apis.RejectionEventListApi.as_view(), name="rejection-events"),
]
