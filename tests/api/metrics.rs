//! Prometheus metrics: scraped after real traffic and parsed.

use std::collections::BTreeMap;

use certification_service::{
    grpc::proto::check_duplicate_request::Key,
    sandbox::identities::{ADULT, ci_for},
};

use crate::helpers::App;

/// One sample: name, labels, value.
pub type Sample = (String, BTreeMap<String, String>, f64);

pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("label=value");
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().expect("a number"))
        })
        .collect()
}

/// The value of the first sample named `name` whose labels include `wanted`.
pub fn value(samples: &[Sample], name: &str, wanted: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(sample, labels, _)| {
            sample == name
                && wanted
                    .iter()
                    .all(|(key, value)| labels.get(*key).map(String::as_str) == Some(*value))
        })
        .map(|sample| sample.2)
}

#[tokio::test]
async fn a_scrape_after_traffic_has_every_series_with_its_labels_and_no_personal_data() {
    let app = App::new()
        .adjust(|settings| settings.server.metrics_listen_addr = Some("127.0.0.1:0".parse().unwrap()))
        .spawn()
        .await;
    let identity = app.verify(ADULT).await.unwrap().into_inner().identity.unwrap();
    app.bind(ADULT, "acct-metrics").await.unwrap();
    assert!(app.verify("not-an-imp-uid").await.is_err());
    app.check_duplicate(Key::Ci(ci_for("hong"))).await.unwrap();

    let url = format!("http://{}/metrics", app.metrics_addr.unwrap());
    let response = reqwest::get(&url).await.unwrap();
    assert!(response.status().is_success());
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    let samples = parse(&text);

    let service = ("service", "certification.v1.CertificationService");
    for (method, code) in [
        ("Verify", "OK"),
        ("Verify", "INVALID_ARGUMENT"),
        ("CheckDuplicate", "OK"),
    ] {
        let labels = [service, ("method", method), ("code", code)];
        assert!(
            value(&samples, "certification_rpc_requests_total", &labels).is_some_and(|count| count >= 1.0),
            "{method} {code}:\n{text}"
        );
        assert!(value(&samples, "certification_rpc_duration_seconds_count", &labels).is_some());
        assert!(
            value(
                &samples,
                "certification_rpc_duration_seconds_bucket",
                &[labels[0], labels[1], ("le", "+Inf")]
            )
            .is_some()
        );
    }
    for endpoint in ["get_token", "certification"] {
        let labels = [("endpoint", endpoint), ("outcome", "ok")];
        assert!(
            value(
                &samples,
                "certification_portone_request_duration_seconds_count",
                &labels
            )
            .is_some(),
            "{endpoint}:\n{text}"
        );
    }
    assert!(
        value(
            &samples,
            "certification_token_cache_lookups_total",
            &[("level", "in_process"), ("result", "hit")]
        )
        .is_some()
    );
    assert!(value(&samples, "certification_token_fetches_total", &[]).is_some_and(|count| count >= 1.0));
    assert!(
        value(
            &samples,
            "certification_db_pool_connections",
            &[("state", "in_use")]
        )
        .is_some()
    );
    assert!(
        value(
            &samples,
            "certification_db_pool_connections",
            &[("state", "idle")]
        )
        .is_some()
    );
    assert_eq!(
        value(
            &samples,
            "certification_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    for personal in [identity.name, identity.ci, identity.di, "acct-metrics".to_owned()] {
        assert!(!text.contains(&personal), "an identifier in the metrics");
    }
}
