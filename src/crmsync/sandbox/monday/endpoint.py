"""``POST /v2``: authentication, version, idempotency, complexity, then GraphQL execution.

::

    request -> token? (401) -> minute/day limits (429) -> API-Version (InvalidVersionException)
            -> Idempotency-Key: replay cached reply | 409 while in flight | run
            -> JSON body (400) -> parse/validate (cached; errors under 200)
            -> complexity: single-query cap, per-minute budget (429 in the version's shape)
            -> execute under the emulator lock (mutations on a worker thread)
            -> {"data", "errors"?, "account_id", "extensions": {"request_id"}}
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from graphql import ExecutionResult, GraphQLError, GraphQLSyntaxError, OperationType, execute_sync
from starlette.requests import Request
from starlette.responses import Response

from crmsync.sandbox.monday import complexity
from crmsync.sandbox.monday.context import RequestContext
from crmsync.sandbox.monday.errors import (
    MondayError,
    envelope,
    error_body,
    error_response,
    json_response,
    new_request_id,
)
from crmsync.sandbox.monday.resolvers.meta import resolve_version_header

if TYPE_CHECKING:
    from crmsync.sandbox.monday.emulator import MondayEmulator

_TOKENS = {
    "{": "LCURLY",
    "}": "RCURLY",
    "(": "LPAREN",
    ")": "RPAREN",
    "[": "LBRACKET",
    "]": "RBRACKET",
    ":": "COLON",
    "=": "EQUALS",
    "!": "BANG",
    "$": "VAR_SIGN",
    "@": "DIR_SIGN",
    "...": "ELLIPSIS",
    "|": "PIPE",
    "&": "AMP",
}
_KINDS = {"Name": "IDENTIFIER", "String": "STRING", "Int": "INT", "Float": "FLOAT", "BlockString": "STRING"}


def unauthorized() -> Response:
    return error_response(401, "Unauthorized", "UNAUTHORIZED", account=False, status_code=401)


def rate_limited(retry_in: int) -> Response:
    return error_response(
        429, "Rate Limit Exceeded", "RATE_LIMIT_EXCEEDED", retry_after=retry_in, retry_in_seconds=retry_in
    )


def daily_limit_exceeded(retry_in: int) -> Response:
    return error_response(
        429,
        "Daily limit exceeded",
        "DAILY_LIMIT_EXCEEDED",
        retry_after=retry_in,
        retry_in_seconds=retry_in,
    )


def complexity_exhausted(version: str, cost: int, left: int, limit: int, retry_in: int) -> Response:
    """The 429 for a spent budget, in the shape of the request's API version."""
    headers = {"Retry-After": str(retry_in)}
    if version < "2025-01":
        message = (
            f"Complexity budget exhausted, query cost {cost} budget remaining {left} out of {limit} "
            f"reset in {retry_in} seconds"
        )
        legacy = {
            "error_code": "ComplexityException",
            "status_code": 429,
            "error_message": message,
            "errors": [message],
            "account_id": envelope({}, "")["account_id"],
        }
        return json_response(legacy, 429, headers)
    extensions: dict[str, Any] = {"code": "COMPLEXITY_BUDGET_EXHAUSTED", "retry_in_seconds": retry_in}
    if version < "2025-07":
        extensions.update(
            complexity=cost, complexity_budget_left=left, complexity_budget_limit=limit, status_code=429
        )
    body = {"errors": [{"message": "Complexity budget exhausted", "extensions": extensions}]}
    return json_response(envelope(body, new_request_id()), 429, headers)


def parse_error(exc: GraphQLSyntaxError) -> dict[str, Any]:
    """graphql-core's syntax error in monday's (graphql-ruby's) words."""
    line, column = (exc.locations[0].line, exc.locations[0].column) if exc.locations else (1, 1)
    found = re.search(r"found (?:(\w+) )?['\"<]?(.*?)['\">]?\.?$", exc.message)
    if found and found.group(2) == "EOF":
        message = "Unexpected end of document"
    elif found:
        kind, text = found.group(1), found.group(2)
        name = _KINDS.get(kind or "", _TOKENS.get(text, "UNKNOWN_CHAR"))
        message = f'Parse error on "{text}" ({name}) at [{line}, {column}]'
    else:
        message = f"Parse error at [{line}, {column}]: {exc.message}"
    return {
        "message": message,
        "locations": [{"line": line, "column": column}],
        "extensions": {"code": "PARSE_ERROR"},
    }


def validation_error(error: GraphQLError) -> dict[str, Any]:
    """A validation error, with graphql-ruby's wording and code for the common ones."""
    formatted = dict(error.formatted)
    text = error.message
    if match := re.match(r"Cannot query field '(\w+)' on type '(\w+)'", text):
        formatted["message"] = f"Field '{match[1]}' doesn't exist on type '{match[2]}'"
        extensions = {"code": "undefinedField", "typeName": match[2], "fieldName": match[1]}
    elif match := re.match(r"Unknown argument '(\w+)' on field '(\w+)\.(\w+)'", text):
        formatted["message"] = f"Field '{match[3]}' doesn't accept argument '{match[1]}'"
        extensions = {
            "code": "argumentNotAccepted",
            "name": match[3],
            "typeName": "Field",
            "argumentName": match[1],
        }
    elif match := re.match(r"Field '(\w+)' argument '(\w+)' of type '.*' is required", text):
        formatted["message"] = f"Field '{match[1]}' is missing required arguments: {match[2]}"
        extensions = {
            "code": "missingRequiredArguments",
            "className": "Field",
            "name": match[1],
            "arguments": match[2],
        }
    else:
        extensions = {"code": "GRAPHQL_VALIDATION_FAILED"}
    formatted["extensions"] = extensions
    return formatted


class GraphQLEndpoint:
    def __init__(self, emulator: MondayEmulator) -> None:
        self.emulator = emulator

    async def handle(self, request: Request) -> Response:
        em = self.emulator
        auth = request.headers.get("authorization", "").strip()
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else auth
        app = token == em.app_token
        if not token or (token != em.token and not app):
            return unauthorized()
        retry = em.daily_limit.hit()
        if retry is not None:
            return daily_limit_exceeded(retry)
        retry = em.minute_limit.hit()
        if retry is not None:
            return rate_limited(retry)
        try:
            version = resolve_version_header(request.headers.get("api-version"))
        except MondayError as exc:
            body = {"errors": [{"message": exc.message, "extensions": exc.extensions}]}
            return json_response(envelope(body, new_request_id()))
        key = request.headers.get("idempotency-key")
        if not key:
            return await self._run(request, token, app, version)
        owned = em.idempotency.begin(token, key)
        if owned is False:
            return error_response(
                409,
                "A request with this Idempotency-Key is still in progress",
                "IDEMPOTENCY_CONFLICT",
                retry_after=1,
                status_code=409,
            )
        if owned is not True:
            return Response(
                owned.body,
                status_code=owned.status,
                headers={**owned.headers, "Idempotency-Replayed": "true"},
            )
        response: Response | None = None
        try:
            response = await self._run(request, token, app, version)
            return response
        finally:
            if response is None:
                em.idempotency.abandon(token, key)
            else:
                headers = {"Content-Type": response.headers.get("content-type", "application/json")}
                em.idempotency.finish(token, key, response.status_code, bytes(response.body), headers)

    async def _run(self, request: Request, token: str, app: bool, version: str) -> Response:
        em = self.emulator
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return error_response(400, "Invalid JSON in request body", "JsonParseException", status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return error_response(
                400, "Bad request: no query string was present", "BAD_REQUEST", status_code=400
            )
        variables = body.get("variables")
        if isinstance(variables, str):
            if version >= "2025-04":
                return error_response(
                    400,
                    "Bad request: variables must be a JSON object, not a JSON string",
                    "BAD_REQUEST",
                    status_code=400,
                )
            try:
                variables = json.loads(variables)
            except ValueError:
                return error_response(400, "Invalid JSON in variables", "JsonParseException", status_code=400)
        if variables is not None and not isinstance(variables, dict):
            return error_response(
                400, "Bad request: variables must be a JSON object", "BAD_REQUEST", status_code=400
            )
        operation_name = body.get("operationName") or None
        request_id = new_request_id()
        checked = em.documents.get(body["query"])
        if checked.syntax_error is not None:
            return json_response(envelope({"errors": [parse_error(checked.syntax_error)]}, request_id))
        if checked.errors:
            errors = [validation_error(e) for e in checked.errors]
            return json_response(envelope({"errors": errors}, request_id))
        operation = checked.operation(operation_name)
        if operation is None or checked.document is None:
            message = (
                f"No operation named '{operation_name}'"
                if operation_name
                else "An operation name is required when the document holds several operations"
            )
            return json_response(envelope(error_body(message, "GRAPHQL_VALIDATION_FAILED"), request_id))
        mutation = operation.operation == OperationType.MUTATION
        cost = complexity.estimate(checked.document, operation_name, variables or {})
        if cost > complexity.MAX_QUERY_COMPLEXITY:
            message = (
                f"Query has complexity of {cost}, which exceeds max complexity of "
                f"{complexity.MAX_QUERY_COMPLEXITY}"
            )
            return json_response(
                envelope(
                    error_body(
                        message,
                        "maxComplexityExceeded",
                        complexity=cost,
                        maxComplexity=complexity.MAX_QUERY_COMPLEXITY,
                    ),
                    request_id,
                )
            )
        kind = ("write" if mutation else "read") if app else "all"
        try:
            charge = em.budget.charge(token, kind, cost)
        except complexity.BudgetExhausted as exc:
            return complexity_exhausted(version, exc.cost, exc.left, exc.limit, exc.retry_in)

        def run() -> ExecutionResult:
            with em.lock:
                context = RequestContext(
                    ops=em.ops,
                    cursors=em.cursors,
                    hub=em.hub,
                    lock=em.lock,
                    user_id=em.api_user_id,
                    app=app,
                    version=version,
                    charge=charge,
                )
                result = execute_sync(
                    em.schema,
                    checked.document,  # type: ignore[arg-type]
                    context_value=context,
                    variable_values=variables,
                    operation_name=operation_name,
                )
                assert isinstance(result, ExecutionResult)
                return result

        result = await anyio.to_thread.run_sync(run) if mutation else run()
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [_formatted(e) for e in result.errors]
        return json_response(envelope(out, request_id))


def _formatted(error: GraphQLError) -> dict[str, Any]:
    formatted = dict(error.formatted)
    if error.original_error is not None and not isinstance(error.original_error, MondayError):
        # a bug in the emulator or a value it cannot coerce: say so as monday would, without a traceback
        formatted.setdefault("extensions", {"code": "INTERNAL_SERVER_ERROR"})
    elif "extensions" not in formatted:
        formatted["extensions"] = {"code": "GRAPHQL_VALIDATION_FAILED"}
    return formatted
