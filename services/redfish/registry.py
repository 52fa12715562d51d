"""Redfish messages and error bodies (DSP0266 "Error responses"; message ids and
texts from DMTF's Base and ResourceEvent registries, so clients can look them up)."""

from __future__ import annotations

BASE = "Base.1.16.0"
RESOURCE_EVENT = "ResourceEvent.1.3.0"

# id: (severity, text with %1.. placeholders, resolution)
BASE_MESSAGES: dict[str, tuple[str, str, str]] = {
    "Success": ("OK", "The request completed successfully.", "None"),
    "Created": ("OK", "The resource has been created successfully.", "None"),
    "GeneralError": ("Critical", "A general error has occurred.  See Resolution for information on how to "
                     "resolve the error, or @Message.ExtendedInfo if Resolution is not provided.", "None."),
    "InternalError": ("Critical", "The request failed due to an internal service error.  The service is still "
                      "operational.", "Resubmit the request.  If the problem persists, consider resetting the "
                      "service."),
    "ResourceNotFound": ("Critical", "The requested resource of type %1 named '%2' was not found.",
                         "Provide a valid resource identifier and resubmit the request."),
    "NoValidSession": ("Critical", "There is no valid session established with the implementation.",
                       "Establish a session before attempting any operations."),
    "InsufficientPrivilege": ("Critical", "There are insufficient privileges for the account or credentials "
                              "associated with the current session to perform the requested operation.",
                              "Either abandon the operation or change the associated access rights and "
                              "resubmit the request if the operation failed."),
    "OperationNotAllowed": ("Critical", "The HTTP method is not allowed on this resource.", "None."),
    "ActionNotSupported": ("Critical", "The action %1 is not supported by the resource.",
                           "The action supplied cannot be resubmitted to the implementation.  Perhaps the "
                           "action was invalid, the wrong resource was the target or the implementation "
                           "documentation may be of assistance."),
    "ActionParameterMissing": ("Critical", "The action %1 requires the parameter %2 to be present in the "
                               "request body.", "Supply the action with the required parameter in the request "
                               "body when the request is resubmitted."),
    "ActionParameterValueNotInList": ("Warning", "The value '%1' for the parameter %2 in the action %3 is not "
                                      "in the list of acceptable values.", "Choose a value from the "
                                      "enumeration list that the implementation can support and resubmit the "
                                      "request if the operation failed."),
    "ActionParameterValueFormatError": ("Warning", "The value '%1' for the parameter %2 in the action %3 is of "
                                        "a different format than the parameter can accept.", "Correct the "
                                        "value for the parameter in the request body and resubmit the request "
                                        "if the operation failed."),
    "ActionParameterNotSupported": ("Warning", "The parameter %1 for the action %2 is not supported on the "
                                    "target resource.", "Remove the parameter supplied and resubmit the "
                                    "request if the operation failed."),
    "PropertyValueNotInList": ("Warning", "The value '%1' for the property %2 is not in the list of acceptable "
                               "values.", "Choose a value from the enumeration list that the implementation "
                               "can support and resubmit the request if the operation failed."),
    "PropertyValueTypeError": ("Warning", "The value '%1' for the property %2 is of a different type than the "
                               "property can accept.", "Correct the value for the property in the request "
                               "body and resubmit the request if the operation failed."),
    "PropertyValueFormatError": ("Warning", "The value '%1' for the property %2 is of a different format than "
                                 "the property can accept.", "Correct the value for the property in the "
                                 "request body and resubmit the request if the operation failed."),
    "PropertyUnknown": ("Warning", "The property %1 is not in the list of valid properties for the resource.",
                        "Remove the unknown property from the request body and resubmit the request if the "
                        "operation failed."),
    "PropertyNotWritable": ("Warning", "The property %1 is a read only property and cannot be assigned a "
                            "value.", "Remove the property from the request body and resubmit the request if "
                            "the operation failed."),
    "PropertyMissing": ("Warning", "The property %1 is a required property and must be included in the "
                        "request.", "Ensure that the property is in the request body and has a valid value "
                        "and resubmit the request if the operation failed."),
    "MalformedJSON": ("Critical", "The request body submitted was malformed JSON and could not be parsed by "
                      "the receiving service.", "Ensure that the request body is valid JSON and resubmit the "
                      "request."),
    "PreconditionFailed": ("Critical", "The ETag supplied did not match the ETag required to change this "
                           "resource.", "Try the operation again using the appropriate ETag."),
    "ResourceCannotBeDeleted": ("Critical", "The delete request failed because the resource requested cannot "
                                "be deleted.", "Do not attempt to delete a non-deletable resource."),
    "ResourceInUse": ("Warning", "The change to the requested resource failed because the resource is in use "
                      "or in transition.", "Remove the condition and resubmit the request if the operation "
                      "failed."),
    "ServiceTemporarilyUnavailable": ("Critical", "The service is temporarily unavailable.  Retry in %1 "
                                      "seconds.", "Wait for the indicated retry duration and retry the "
                                      "operation."),
    "CouldNotEstablishConnection": ("Critical", "The service failed to establish a connection with the URI "
                                    "'%1'.", "Ensure that the URI contains a valid and reachable node name, "
                                    "protocol information and other URI components."),
    "AccessDenied": ("Critical", "While attempting to establish a connection to '%1', the service denied "
                     "access.", "Attempt to ensure that the URI is correct and that the service has the "
                     "appropriate credentials."),
    "SourceDoesNotSupportProtocol": ("Critical", "The other end of the connection at '%1' does not support the "
                                     "specified protocol %2.", "Change protocols or URIs."),
    "StringValueTooLong": ("Warning", "The string '%1' exceeds the length limit %2.",
                           "Resubmit the request with an appropriate string length."),
    "QueryNotSupported": ("Warning", "Querying is not supported by the implementation.",
                          "Remove the query parameters and resubmit the request if the operation failed."),
}

RESOURCE_EVENT_MESSAGES: dict[str, tuple[str, str]] = {
    "ResourcePoweredOn": ("OK", "The resource `%1` has powered on."),
    "ResourcePoweredOff": ("OK", "The resource `%1` has powered off."),
    "ResourceChanged": ("OK", "One or more resource properties have changed."),
}


def _fill(text: str, args: list[str]) -> str:
    for i, arg in reversed(list(enumerate(args, 1))):  # %10 before %1
        text = text.replace(f"%{i}", str(arg))
    return text


def message(message_id: str, *args: object, related: list[str] | None = None) -> dict:
    """One Message object (Message.v1_1_x) from the Base registry."""
    severity, text, resolution = BASE_MESSAGES[message_id]
    str_args = [str(a) for a in args]
    body = {
        "@odata.type": "#Message.v1_1_1.Message",
        "MessageId": f"{BASE}.{message_id}",
        "Message": _fill(text, str_args),
        "MessageArgs": str_args,
        "MessageSeverity": severity,
        "Resolution": resolution,
    }
    if related:
        body["RelatedProperties"] = related
    return body


def error_body(message_id: str, *args: object, related: list[str] | None = None, detail: str = "") -> dict:
    """The JSON body of an error response: `error` with code, message and extended info.
    `detail` (what exactly went wrong here) follows the registry's text in `message`."""
    first = message(message_id, *args, related=related)
    text = f"{first['Message']} {detail}" if detail else first["Message"]
    return {"error": {"code": first["MessageId"], "message": text, "@Message.ExtendedInfo": [first]}}


class RedfishError(Exception):
    """A request the service refuses: an HTTP status and a Base registry message."""

    def __init__(self, status: int, message_id: str, *args: object, related: list[str] | None = None,
                 headers: dict[str, str] | None = None, detail: str = ""):
        super().__init__(f"{status} {message_id} {args} {detail}".rstrip())
        self.status = status
        self.body = error_body(message_id, *args, related=related, detail=detail)
        self.headers = headers or {}


def resource_event_message(message_id: str, *args: object) -> tuple[str, str, str]:
    """(full MessageId, text, severity) of a ResourceEvent registry message."""
    severity, text = RESOURCE_EVENT_MESSAGES[message_id]
    return f"{RESOURCE_EVENT}.{message_id}", _fill(text, [str(a) for a in args]), severity
