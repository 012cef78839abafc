//! The sandbox over real HTTP on loopback: the [`Harness`] and helpers the topical files share.

mod certify;
mod control;
mod deletions;
mod faults;
mod fixtures;
mod lookups;
mod merchants;
mod tokens;
mod v2;
mod v2_faults;

use serde_json::{Value, json};

use super::{
    SANDBOX_IMP_KEY, SANDBOX_IMP_SECRET, SANDBOX_V2_API_SECRET, Sandbox, SandboxConfig, SandboxHandle,
};

struct Harness {
    sandbox: Sandbox,
    client: reqwest::Client,
}

async fn start() -> Harness {
    start_with(SandboxConfig::default()).await
}

async fn start_with(config: SandboxConfig) -> Harness {
    // reqwest is built without a default crypto provider; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = Sandbox::start(listener, config).await.unwrap();
    let client = reqwest::Client::builder().build().unwrap();
    Harness { sandbox, client }
}

impl Harness {
    fn handle(&self) -> SandboxHandle {
        self.sandbox.handle()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url())
    }

    async fn get_token_with(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/users/getToken"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A successful getToken's `response` object.
    async fn token(&self) -> Value {
        let response = self
            .get_token_with(json!({"imp_key": SANDBOX_IMP_KEY, "imp_secret": SANDBOX_IMP_SECRET}))
            .await;
        let (status, body) = read(response).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["code"], 0);
        assert!(body["message"].is_null());
        body["response"].clone()
    }

    async fn access_token(&self) -> String {
        self.token().await["access_token"].as_str().unwrap().to_owned()
    }

    async fn lookup(&self, imp_uid: &str, authorization: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(&format!("/certifications/{imp_uid}")));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        request.send().await.unwrap()
    }

    /// A token of the merchant with these credentials.
    async fn access_token_of(&self, imp_key: &str, imp_secret: &str) -> String {
        let response = self
            .get_token_with(json!({"imp_key": imp_key, "imp_secret": imp_secret}))
            .await;
        let (status, body) = read(response).await;
        assert_eq!(status, 200, "{body}");
        body["response"]["access_token"].as_str().unwrap().to_owned()
    }

    /// A lookup with this token and, if given, a `Tier` header.
    async fn lookup_with_tier(&self, imp_uid: &str, token: &str, tier: Option<&str>) -> (u16, Value) {
        let mut request = self
            .client
            .get(self.url(&format!("/certifications/{imp_uid}")))
            .header("Authorization", token);
        if let Some(tier) = tier {
            request = request.header("Tier", tier);
        }
        read(request.send().await.unwrap()).await
    }

    /// `DELETE /certifications/{imp_uid}` with this `Authorization` value and, if given, a `Tier`
    /// header.
    async fn delete(&self, imp_uid: &str, authorization: Option<&str>, tier: Option<&str>) -> (u16, Value) {
        let mut request = self
            .client
            .delete(self.url(&format!("/certifications/{imp_uid}")));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        if let Some(tier) = tier {
            request = request.header("Tier", tier);
        }
        read(request.send().await.unwrap()).await
    }

    /// V2's lookup at `path_and_query` (after `/identity-verifications/`) with this
    /// `Authorization` value.
    async fn v2_get(&self, path_and_query: &str, authorization: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .get(self.url(&format!("/identity-verifications/{path_and_query}")));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        request.send().await.unwrap()
    }

    /// V2's lookup with the sandbox's secret: (status, body).
    async fn v2_lookup(&self, path_and_query: &str) -> (u16, Value) {
        let authorization = format!("PortOne {SANDBOX_V2_API_SECRET}");
        read(self.v2_get(path_and_query, Some(&authorization)).await).await
    }

    /// A 200 of V2's lookup: the verification object.
    async fn v2_ok(&self, id: &str) -> Value {
        let (status, body) = self.v2_lookup(id).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn lookup_ok(&self, imp_uid: &str) -> Value {
        let token = self.access_token().await;
        let (status, body) = read(self.lookup(imp_uid, Some(&token)).await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["code"], 0);
        body["response"].clone()
    }
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"));
    (status, body)
}

fn content_type(response: &reqwest::Response) -> String {
    response.headers()["content-type"].to_str().unwrap().to_owned()
}

/// V2's error object.
fn v2_error(error_type: &str) -> impl Fn(&Value) -> bool {
    let error_type = error_type.to_owned();
    move |body| {
        body["type"] == error_type.as_str()
            && body["message"].is_string()
            && body.as_object().is_some_and(|object| object.len() == 2)
    }
}

fn envelope_error(code: i64, message: &str) -> Value {
    json!({"code": code, "message": message, "response": null})
}
