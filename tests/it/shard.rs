//! N exporter replicas with --shard.index/--shard.count poll every supplier
//! exactly once between them.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use balance_exporter::app::{App, Options};
use balance_exporter::shard::Shard;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

struct CountByPath(Arc<Mutex<BTreeMap<String, u32>>>);

impl Respond for CountByPath {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        *self.0.lock().unwrap().entry(req.url.path().to_string()).or_default() += 1;
        ResponseTemplate::new(200).set_body_string(r#"{"balance": {"amount": 1.00, "currency": "USD"}}"#)
    }
}

#[tokio::test]
async fn three_shards_poll_every_supplier_exactly_once() {
    let server = MockServer::start().await;
    let counts = Arc::new(Mutex::new(BTreeMap::new()));
    Mock::given(wiremock::matchers::method("GET")).respond_with(CountByPath(counts.clone())).mount(&server).await;
    let n = 60;
    let mut config = String::from("suppliers:\n");
    for i in 0..n {
        config.push_str(&format!("  - {{name: supplier-{i}, kind: foxreload, base_url: '{}/s{i}', poll_interval: 10m}}\n", server.uri()));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(&path, &config).unwrap();
    let mut apps = vec![];
    for index in 0..3 {
        apps.push(
            App::start(Options {
                config_file: Some(path.clone()),
                demo: false,
                listen_address: "127.0.0.1:0".into(),
                telemetry_path: "/metrics".into(),
                shard: Some(Shard::new(index, 3).unwrap()),
                ..Default::default()
            })
            .await
            .unwrap(),
        );
    }
    let mut owned = vec![];
    for app in &apps {
        let s = common::wait_for(app, Duration::from_secs(20), "shard polled", |s| {
            let infos = s.series_of("supplier_info").len();
            infos > 0 && s.series_of("supplier_up").len() == infos
        })
        .await;
        owned.push(s.series_of("supplier_info").len());
    }
    for app in apps {
        app.stop().await;
    }
    let counts = counts.lock().unwrap();
    assert_eq!(owned.iter().sum::<usize>(), n, "shards own {owned:?}");
    assert!(owned.iter().all(|o| *o > 5), "uneven: {owned:?}");
    assert_eq!(counts.len(), n, "every supplier polled");
    assert!(counts.values().all(|c| *c == 1), "each exactly once: {counts:?}");
}
