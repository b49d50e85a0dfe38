//! Routing by host and longest path prefix; round-robin; keep-alive reuse.

use maitred_tests::*;

fn config(a: &Backend, b: &Backend, c: &Backend) -> String {
    format!(
        r#"
[runtime]
workers = 2
[[listener]]
name = "web"
listen = "127.0.0.1:0"
[[route]]
listener = "web"
path_prefix = "/"
upstream = "a"
[[route]]
listener = "web"
path_prefix = "/api/"
upstream = "b"
[[route]]
listener = "web"
path_prefix = "/api/v2/"
upstream = "c"
[[route]]
listener = "web"
host = "api.example.com"
path_prefix = "/only/"
upstream = "c"
[[route]]
listener = "web"
host = "*.example.org"
upstream = "b"
[upstream.a]
endpoints = ["{}"]
[upstream.b]
endpoints = ["{}"]
[upstream.c]
endpoints = ["{}"]
"#,
        a.addr, b.addr, c.addr
    )
}

#[tokio::test]
async fn routes_by_host_and_longest_prefix() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let proxy = Proxy::start(&config(&a, &b, &c));
    let url = proxy.url("web");
    assert_eq!(get(&format!("{url}/x"), &[]).await.header("x-backend"), "a");
    assert_eq!(
        get(&format!("{url}/api/users"), &[])
            .await
            .header("x-backend"),
        "b"
    );
    assert_eq!(
        get(&format!("{url}/api/v2/users"), &[])
            .await
            .header("x-backend"),
        "c"
    );
    assert_eq!(
        get(&format!("{url}/only/x"), &[("host", "API.example.com")])
            .await
            .header("x-backend"),
        "c"
    );
    assert_eq!(
        get(
            &format!("{url}/anything"),
            &[("host", "www.example.org:8080")]
        )
        .await
        .header("x-backend"),
        "b"
    );
    // A host with its own routes does not fall back to the host-less ones.
    let missing = get(&format!("{url}/x"), &[("host", "api.example.com")]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, "404 Not Found\n");
}

#[tokio::test]
async fn unmatched_path_is_404() {
    let a = Backend::start("a").await;
    let proxy = Proxy::start(&format!(
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n[[route]]\npath_prefix = \"/api/\"\nupstream = \"a\"\n[upstream.a]\nendpoints = [\"{}\"]\n",
        a.addr
    ));
    let reply = get(&format!("{}/other", proxy.url("web")), &[]).await;
    assert_eq!(reply.status, 404);
    assert_eq!(a.requests(), 0);
}

#[tokio::test]
async fn round_robin_spreads_evenly_and_reuses_connections() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = Proxy::start(&format!(
        "[runtime]\nworkers = 1\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n[[route]]\nupstream = \"u\"\n[upstream.u]\nendpoints = [\"{}\", \"{}\"]\nbalancer = \"round_robin\"\n",
        a.addr, b.addr
    ));
    let client = http1_client();
    for _ in 0..100 {
        let req = http::Request::get(format!("{}/", proxy.url("web")))
            .body(Default::default())
            .unwrap();
        assert_eq!(send(&client, req).await.status, 200);
    }
    assert_eq!(a.requests(), 50);
    assert_eq!(b.requests(), 50);
    // Sequential requests on one client connection: the proxy keeps one connection per backend.
    assert!(
        a.connections() <= 2 && b.connections() <= 2,
        "connections: {} {}",
        a.connections(),
        b.connections()
    );
}
