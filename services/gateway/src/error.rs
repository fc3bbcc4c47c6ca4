//! The one place HTTP errors of the gateway become responses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401 with the `WWW-Authenticate` challenge pointing at the resource metadata.
    #[error("{error}")]
    Unauthorized { error: AuthError, resource_metadata: String },
    /// 503: a dependency is down; the body says which.
    #[error("not ready")]
    NotReady(serde_json::Value),
    /// A request the caller can fix (or retry, for 503), with what to do.
    #[error("{message}")]
    Request { status: StatusCode, message: String },
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Unauthorized { error, resource_metadata } => {
                if matches!(error, AuthError::Unavailable) {
                    let body =
                        Json(json!({"error": "temporarily_unavailable", "error_description": error.to_string()}));
                    return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "2")], body).into_response();
                }
                // RFC 6750: no error code when no credentials were sent.
                let challenge = match error {
                    AuthError::Missing => {
                        format!("Bearer resource_metadata=\"{resource_metadata}\"")
                    }
                    _ => format!(
                        "Bearer error=\"invalid_token\", error_description=\"{}\", resource_metadata=\"{resource_metadata}\"",
                        // Header values must be visible ASCII.
                        error.to_string().replace('"', "'").replace('…', "...").replace(|c: char| !c.is_ascii(), "")
                    ),
                };
                let body = Json(json!({
                    "error": if matches!(error, AuthError::Missing) { "unauthorized" } else { "invalid_token" },
                    "error_description": error.to_string(),
                }));
                let mut res = (StatusCode::UNAUTHORIZED, body).into_response();
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                res
            }
            ApiError::NotReady(detail) => (StatusCode::SERVICE_UNAVAILABLE, Json(detail)).into_response(),
            ApiError::Request { status, message } => {
                let error = match status {
                    StatusCode::BAD_REQUEST => "invalid_request",
                    StatusCode::NOT_FOUND => "not_found",
                    StatusCode::CONFLICT => "conflict",
                    _ => "unavailable",
                };
                (status, Json(json!({ "error": error, "message": message }))).into_response()
            }
        }
    }
}
