//! The sandbox over real HTTP on loopback: the [`Harness`] and helpers the topical files share.

mod certify;
mod control;
mod faults;
mod lookups;
mod tokens;

use serde_json::{Value, json};

use super::{SANDBOX_IMP_KEY, SANDBOX_IMP_SECRET, Sandbox, SandboxConfig, SandboxHandle};

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

fn envelope_error(code: i64, message: &str) -> Value {
    json!({"code": code, "message": message, "response": null})
}
