"""The scoring service's HTTP contract as an OpenAPI 3.1 document (``GET /openapi.json``).

Request bodies come from the pydantic models the service validates with (``ScoreRequest``,
``DeployRequest``), so the document cannot drift from what the code accepts; responses are
written out here. Client teams generate clients from it, and the reliability suite fuzzes the
service from it (schemathesis: every generated request, valid or not, must get a non-5xx answer).
"""

from __future__ import annotations

import functools
from typing import Any

from fraudops import __version__

_REF = "#/components/schemas/{model}"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
    }


def _object(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


_SCORE_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": [
        "request_id",
        "transaction_id",
        "score",
        "decision",
        "model_name",
        "model_version",
        "fallback",
    ],
    "properties": {
        "request_id": {"type": "string", "description": "X-Request-Id when acceptable, else generated."},
        "transaction_id": {"type": "string"},
        "score": {"type": "number", "minimum": 0, "maximum": 1, "description": "Fraud probability."},
        "decision": {"type": "string", "enum": ["approve", "review", "decline"]},
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "fallback": {"type": "boolean", "description": "Answered by the previous champion."},
        "latency_ms": {"type": "number", "description": "Model and feature time inside the service."},
    },
}

_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "fields": {
            "type": "array",
            "description": "Every offending field with its reason (400/422).",
            "items": {
                "type": "object",
                "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
        "reason": {"type": "string"},
        "detail": {"type": "string"},
    },
}


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The document (built once per process)."""
    from fraudops.serving.deploy import DeployRequest
    from fraudops.serving.schema import ScoreRequest

    schemas: dict[str, Any] = {"ScoreResponse": _SCORE_RESPONSE, "Error": _ERROR}
    for model in (ScoreRequest, DeployRequest):
        doc = model.model_json_schema(by_alias=True, ref_template=_REF, mode="validation")
        schemas.update(doc.pop("$defs", {}))
        schemas[model.__name__] = doc
    too_large = _error("Body, header or request line over the service's limits (413/431/414).")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fraudops scoring service",
            "version": __version__,
            "description": "Real-time fraud scoring of card transactions by the champion model.",
        },
        "paths": {
            "/score": {
                "post": {
                    "operationId": "score",
                    "summary": "Score one transaction with the champion.",
                    "parameters": [
                        {
                            "name": "X-Request-Id",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "Kept when 1-128 of [A-Za-z0-9._:-]; else one is generated.",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": _REF.format(model="ScoreRequest")}}
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Scored.",
                            "content": {
                                "application/json": {"schema": {"$ref": _REF.format(model="ScoreResponse")}}
                            },
                        },
                        "400": _error("Not JSON, or not a JSON object."),
                        "413": too_large,
                        "422": _error(
                            "Fields missing or invalid, or an event time outside the clock's bounds."
                        ),
                        "503": _error("No champion loaded, or the champion failed with no fallback."),
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "responses": {
                        "200": _object("Ready: a champion is loaded (and the registry state)."),
                        "503": _object("Loading, or waiting for the registry."),
                    },
                }
            },
            "/version": {"get": {"operationId": "version", "responses": {"200": _object("Loaded models.")}}},
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/deploy": {
                "post": {
                    "operationId": "deploy",
                    "summary": "Move an alias (promote, shadow, rollback), audited.",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": _REF.format(model="DeployRequest")}}
                        },
                    },
                    "responses": {
                        "200": _object("Moved (or already there)."),
                        "401": _error("No bearer token."),
                        "403": _error("Wrong token, or the control API is disabled."),
                        "404": _error("Unknown version."),
                        "409": _error("The change cannot be made (e.g. a broken bundle)."),
                        "413": too_large,
                        "422": _error("Invalid body."),
                        "503": _error("The model registry is unreachable; try again later."),
                    },
                }
            },
            "/openapi.json": {
                "get": {"operationId": "openapi", "responses": {"200": _object("This document.")}}
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
