"""The inbound webhook endpoint: outside the DRF API (marketplaces hold no API key; the
signature is the authentication), answering errors in the API's one error shape."""

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from core.errors import DomainError, json_error, request_limit_error
from webhooks.services.intake import webhook_challenge, webhook_receive


@csrf_exempt
def webhook_receive_view(request: HttpRequest, channel_type: str, channel_id: int) -> HttpResponse:
    """`POST /webhooks/<channel_type>/<channel_id>/`: verify, store, answer the marketplace.

    2xx with the marketplace's acknowledgement (also for a duplicate, and for a signed
    request seen before: see `webhooks.services.replays`); 401 `invalid_signature`; 404
    `channel_not_found`; 405 for another method; 413 past the request body limit. `GET`
    is a marketplace's check of the endpoint (eBay's `challenge_code`), answered where the
    channel's type has one (else 405).
    """
    if request.method == "GET":
        try:
            status, content, content_type = webhook_challenge(
                channel_type=channel_type, channel_id=channel_id, query=request.GET.dict()
            )
        except DomainError as exc:
            response = json_error(exc.status_code, exc.code, exc.message, exc.details)
            if exc.status_code == 405:
                response["Allow"] = "POST"
            return response
        return HttpResponse(content, status=status, content_type=content_type)
    if request.method != "POST":
        response = json_error(405, "method_not_allowed", f"Method {request.method} not allowed.")
        response["Allow"] = "POST"
        return response
    try:
        body = request.body
    except Exception as exc:
        limit_error = request_limit_error(exc)
        if limit_error is None:
            raise
        return json_error(
            limit_error.status_code, limit_error.code, limit_error.message, limit_error.details
        )
    try:
        result = webhook_receive(
            channel_type=channel_type, channel_id=channel_id, headers=request.headers, body=body
        )
    except DomainError as exc:
        return json_error(exc.status_code, exc.code, exc.message, exc.details)
    status, content, content_type = result.ack
    return HttpResponse(content, status=status, content_type=content_type)
