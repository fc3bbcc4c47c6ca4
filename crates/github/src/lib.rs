//! The GitHub adapter: a GitHub App client (installations, installation tokens, creating or
//! linking repositories), webhook signature verification and parsing, and [`fake::FakeGithub`],
//! a loopback server speaking GitHub's REST and webhook JSON for tests. The only crate importing
//! `octocrab`; it knows nothing of events, NATS or SQL.

mod app;
pub mod fake;
pub mod login;
mod webhook;

pub use app::{AppConfig, GithubApp, GithubRepo, Installation, InstallationToken, authenticated_clone_url};
pub use webhook::{PushEvent, WebhookEvent, parse_webhook, sign, verify_signature};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to GitHub, sorted by what the caller must do: the
/// first four are answers for the user or agent (4xx), `Unavailable` asks for a retry (503),
/// the last two are for the operator (500, logged).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A repository name GitHub would reject or rewrite: the caller must pick another.
    #[error(
        "`{0}` is not a valid GitHub repository name: use 1 to 100 ASCII letters, digits, `-`, `_` or `.` \
         (not `.` or `..`)"
    )]
    InvalidName(String),
    /// The installation or repository does not exist, or the App's installation cannot see it.
    #[error("not found on GitHub, or the GitHub App's installation cannot see it")]
    NotFound,
    /// GitHub does not let an App create repositories in a personal account: the user has to.
    #[error(
        "GitHub does not let an app create repositories in the personal account `{login}`: create the \
         repository on GitHub under `{login}`, give the app's installation access to it (GitHub → Settings → \
         Applications → Installed GitHub Apps → Configure → Repository access), then call again"
    )]
    CannotCreateForUser { login: String },
    /// A webhook delivery without the shape of its event: answer 400 (GitHub shows it in the
    /// delivery log), do not retry.
    #[error("webhook payload rejected: {0}")]
    BadPayload(String),
    /// GitHub refused the request (401 bad App key, 403 missing permission, 422 validation);
    /// `message` is GitHub's own explanation, with its detailed errors appended.
    #[error("GitHub answered {status}: {message}")]
    Api { status: u16, message: String },
    /// GitHub could not be reached, timed out or failed (5xx): retry later.
    #[error("GitHub unavailable: {0}")]
    Unavailable(String),
    /// The App configuration is unusable (private key, API base URL, empty secret): fix the
    /// deployment.
    #[error("GitHub App misconfigured: {0}")]
    Config(String),
    /// GitHub answered success with a body this crate cannot read: a bug or an API change.
    #[error("unexpected answer from GitHub: {0}")]
    Unexpected(String),
}

impl Error {
    /// Translates octocrab's error into what the caller must do; GitHub's own message is kept
    /// because it is usually the most precise instruction available.
    fn from_octocrab(e: octocrab::Error) -> Self {
        match e {
            octocrab::Error::GitHub { source, .. } => {
                let status = source.status_code.as_u16();
                let mut message = source.message.clone();
                let details: Vec<String> = source
                    .errors
                    .iter()
                    .flatten()
                    .filter_map(|e| e.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                    .collect();
                if !details.is_empty() {
                    message = format!("{message} ({})", details.join("; "));
                }
                match status {
                    404 => Error::NotFound,
                    500..=599 => Error::Unavailable(format!("GitHub answered {status}: {message}")),
                    _ => Error::Api { status, message },
                }
            }
            octocrab::Error::Service { source, .. } => Error::Unavailable(source.to_string()),
            octocrab::Error::Hyper { source, .. } => Error::Unavailable(source.to_string()),
            octocrab::Error::JWT { source, .. } => Error::Config(format!("cannot sign the App JWT: {source}")),
            octocrab::Error::Uri { source, .. } => Error::Config(source.to_string()),
            octocrab::Error::UriParse { source, .. } => Error::Config(source.to_string()),
            other => Error::Unexpected(other.to_string()),
        }
    }
}
