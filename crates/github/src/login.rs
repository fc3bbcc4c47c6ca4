//! Sign-in with GitHub: the OAuth web application flow of a GitHub App (or OAuth App).
//!
//! 1. send the browser to `authorize_url` (GitHub asks the user, then redirects back with a
//!    `code` and the `state` we sent);
//! 2. `exchange` the code for a user access token at `/login/oauth/access_token`;
//! 3. read who it is (`/user`) and their verified primary e-mail (`/user/emails`).
//!
//! The web host (`https://github.com`) and the API host (`https://api.github.com`) are
//! separate settings, as they are on GitHub; tests point both at [`crate::fake::FakeGithubLogin`].
//! Plain `reqwest`: three calls with a user token, where octocrab (built around App auth
//! here) adds nothing.

use std::time::Duration;

use serde::Deserialize;

/// The OAuth credentials of the platform's GitHub App.
#[derive(Clone)]
pub struct LoginConfig {
    pub client_id: String,
    pub client_secret: String,
    /// `https://github.com`
    pub web_base: String,
    /// `https://api.github.com`
    pub api_base: String,
}

impl std::fmt::Debug for LoginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginConfig")
            .field("client_id", &self.client_id)
            .field("web_base", &self.web_base)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

/// Why signing in with GitHub failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// GitHub refused the code (expired, used, or for another redirect URI): start again.
    #[error("GitHub refused the sign-in ({0}); start again")]
    Refused(String),
    /// The GitHub account has no verified primary e-mail address to open an account with.
    #[error(
        "your GitHub account has no verified primary e-mail address: verify one on GitHub (Settings → Emails), \
         or sign up with an e-mail address and a password"
    )]
    NoVerifiedEmail,
    /// GitHub could not be reached or answered something unexpected: retry later.
    #[error("GitHub is unreachable or answered unexpectedly ({0}); retry in a minute")]
    Unavailable(String),
}

/// Who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubUser {
    /// GitHub's numeric user id: stable, unlike the login.
    pub id: u64,
    pub login: String,
    /// The verified primary e-mail address, if any.
    pub verified_email: Option<String>,
}

/// A client of GitHub's OAuth web flow.
#[derive(Debug, Clone)]
pub struct GithubLogin {
    config: LoginConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct UserAnswer {
    id: u64,
    login: String,
}

#[derive(Deserialize)]
struct EmailAnswer {
    email: String,
    primary: bool,
    verified: bool,
}

fn unavailable(e: impl std::fmt::Display) -> LoginError {
    LoginError::Unavailable(e.to_string())
}

impl GithubLogin {
    pub fn new(config: LoginConfig) -> Result<Self, LoginError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("deploy-mcp")
            .build()
            .map_err(unavailable)?;
        Ok(Self { config, http })
    }

    /// Where to send the browser. `state` must come back unchanged to the callback.
    pub fn authorize_url(&self, redirect_uri: &str, state: &str) -> String {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("scope", "read:user user:email")
            .append_pair("allow_signup", "true")
            .finish();
        format!("{}/login/oauth/authorize?{query}", self.config.web_base.trim_end_matches('/'))
    }

    /// Exchanges the callback's code for a user access token.
    pub async fn exchange(&self, code: &str, redirect_uri: &str) -> Result<String, LoginError> {
        let url = format!("{}/login/oauth/access_token", self.config.web_base.trim_end_matches('/'));
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.config.client_id)
            .append_pair("client_secret", &self.config.client_secret)
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect_uri)
            .finish();
        let res = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(unavailable)?;
        if !res.status().is_success() {
            return Err(unavailable(format!("the token endpoint answered {}", res.status())));
        }
        // GitHub answers 200 with an `error` field for a bad code.
        let answer: TokenAnswer = res.json().await.map_err(unavailable)?;
        match (answer.access_token, answer.error) {
            (Some(token), None) if !token.is_empty() => Ok(token),
            (_, Some(error)) => Err(LoginError::Refused(answer.error_description.unwrap_or(error))),
            _ => Err(unavailable("no access_token in the answer")),
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, token: &str, path: &str) -> Result<T, LoginError> {
        let url = format!("{}{path}", self.config.api_base.trim_end_matches('/'));
        let res = self
            .http
            .get(url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .send()
            .await
            .map_err(unavailable)?;
        match res.status() {
            s if s.is_success() => res.json().await.map_err(unavailable),
            reqwest::StatusCode::UNAUTHORIZED => Err(LoginError::Refused("the token was not accepted".into())),
            s => Err(unavailable(format!("{path} answered {s}"))),
        }
    }

    /// Who the token belongs to, with their verified primary e-mail.
    pub async fn user(&self, token: &str) -> Result<GithubUser, LoginError> {
        let user: UserAnswer = self.get(token, "/user").await?;
        let emails: Vec<EmailAnswer> = self.get(token, "/user/emails").await?;
        let verified_email = emails.into_iter().find(|e| e.primary && e.verified).map(|e| e.email);
        Ok(GithubUser { id: user.id, login: user.login, verified_email })
    }
}
