//! The MCP server: tools an agent calls. A tool is registered only once its capability works.

use std::sync::Arc;

use rmcp::handler::server::common::Extension;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{Json, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Serialize;

use crate::AppState;
use crate::auth::Principal;

const INSTRUCTIONS: &str = "Deploy MCP ships software for you: git hosting, builds, running apps at \
https://<name>.<base-domain>, databases and custom domains, all through these tools. \
Start with `whoami` to see your account and limits. Refer to everything by name; ids are never needed.";

/// One MCP server per request (the transport is stateless); it only holds shared state.
#[derive(Clone)]
pub struct McpServer {
    #[allow(dead_code)]
    state: AppState,
    tool_router: ToolRouter<Self>,
}

/// A tool failure an agent can act on: a stable code, what went wrong, and what to do next.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ToolError {
    pub error: &'static str,
    pub message: String,
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        let value = serde_json::to_value(&self).unwrap_or_default();
        Ok(CallToolResult::structured_error(value).into())
    }
}

impl ToolError {
    fn unauthenticated() -> Self {
        Self {
            error: "unauthenticated",
            message: "this request carried no verified API key; reconnect with `Authorization: Bearer dk_live_…`"
                .into(),
        }
    }
}

/// The account behind the API key of this request.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WhoAmI {
    /// The account's id (`usr_…`).
    pub user_id: String,
    pub email: String,
    /// Public prefix of the API key in use (the key itself is never shown again).
    pub api_key_prefix: String,
    /// What this account may use.
    pub limits: LimitsView,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LimitsView {
    pub max_services: u32,
    pub max_repos: u32,
    pub max_resources: u32,
    pub max_api_keys: u32,
    /// Memory one service may ask for, in MiB.
    pub max_memory_mb: u32,
    /// CPU one service may ask for, in thousandths of a core.
    pub max_cpu_millis: u32,
}

fn principal(parts: &http::request::Parts) -> Result<Arc<Principal>, ToolError> {
    parts.extensions.get::<Arc<Principal>>().cloned().ok_or_else(ToolError::unauthenticated)
}

#[tool_router]
impl McpServer {
    pub fn new(state: AppState) -> Self {
        Self { state, tool_router: Self::tool_router() }
    }

    /// Who am I? Returns the account behind this connection's API key: its id, e-mail, the
    /// key prefix in use and the account's limits (services, repos, databases, keys, memory and
    /// CPU per service). Call it first to check the connection works.
    #[tool(
        name = "whoami",
        annotations(
            title = "Who am I",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn whoami(&self, Extension(parts): Extension<http::request::Parts>) -> Result<Json<WhoAmI>, ToolError> {
        let p = principal(&parts)?;
        let l = &p.limits;
        Ok(Json(WhoAmI {
            user_id: p.user_id.clone(),
            email: p.email.clone(),
            api_key_prefix: p.key_prefix.clone(),
            limits: LimitsView {
                max_services: l.max_services,
                max_repos: l.max_repos,
                max_resources: l.max_resources,
                max_api_keys: l.max_api_keys,
                max_memory_mb: l.max_memory_mb,
                max_cpu_millis: l.max_cpu_millis,
            },
        }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("deploy-mcp", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}
