//! `seam_api::Client` against our own server: every plain type survives the trip.

mod common;

use bgp::types::Family;
use bgp::wire::Origin;
use common::{ip, prefix, Call};
use seam_api::{ApiError, Client, Table};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reads_what_the_control_reports() {
    let server = common::start().await;
    let client = Client::connect(&server.addr.to_string()).await.unwrap();

    assert_eq!(client.global().await.unwrap(), server.control.global);
    assert_eq!(client.neighbors().await.unwrap(), server.control.neighbors);
    assert_eq!(
        client.neighbor(ip(common::PEER_V6)).await.unwrap().as_ref(),
        Some(&server.control.neighbors[1])
    );
    assert_eq!(client.neighbor(ip("10.9.9.9")).await.unwrap(), None);

    // Destinations come back in prefix order, best path first within one prefix.
    let mut expected = server.control.rib.lock().unwrap().clone();
    expected.retain(|r| Family::of_prefix(&r.prefix) == Family::IPV4_UNICAST);
    expected.sort_by_key(|r| (r.prefix, !r.best));
    assert_eq!(
        client
            .routes(Table::Global, Family::IPV4_UNICAST)
            .await
            .unwrap(),
        expected
    );
    let v6 = client
        .routes(Table::Global, Family::IPV6_UNICAST)
        .await
        .unwrap();
    assert_eq!(v6.len(), 1);
    assert_eq!(v6[0].attrs.next_hop, Some(ip("2001:db8::2")));
    let peer = ip(common::PEER_V4);
    assert_eq!(
        client
            .routes(Table::AdjIn(peer), Family::IPV4_UNICAST)
            .await
            .unwrap(),
        server.control.adj_in[&peer]
    );
    assert_eq!(
        client
            .routes(Table::AdjOut(peer), Family::IPV4_UNICAST)
            .await
            .unwrap(),
        server.control.adj_out[&peer]
    );

    let e = client
        .routes(Table::AdjIn(ip("10.9.9.9")), Family::IPV4_UNICAST)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(&e, ApiError::Rpc { status, .. } if status.code() == tonic::Code::NotFound),
        "{text}"
    );
    assert!(
        text.contains("ListPath") && text.contains("no neighbor 10.9.9.9"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_add_and_delete_reach_the_control() {
    let server = common::start().await;
    let client = Client::connect(&server.addr.to_string()).await.unwrap();
    client
        .add_path(prefix("10.99.0.0/26"), Some(ip("192.0.2.7")))
        .await
        .unwrap();
    client
        .add_path(prefix("2001:db8:99::/64"), None)
        .await
        .unwrap();
    client.delete_path(prefix("10.99.0.0/26")).await.unwrap();
    let calls = server.control.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let Call::Add(p, a) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(
        (*p, a.next_hop, a.origin),
        (
            prefix("10.99.0.0/26"),
            Some(ip("192.0.2.7")),
            Some(Origin::Igp)
        )
    );
    let Call::Add(p, a) = &calls[1] else {
        panic!("{calls:?}")
    };
    assert_eq!((*p, a.next_hop), (prefix("2001:db8:99::/64"), None));
    assert_eq!(calls[2], Call::Delete(prefix("10.99.0.0/26")));
    let e = client
        .delete_path(prefix("10.99.0.0/26"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("DeletePath"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_names_the_address() {
    // Bind then drop a listener: nothing listens on that port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("127.0.0.1:{port}");
    let e = Client::connect(&target).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("cannot reach the seam bgpd API at {target}: ")),
        "{text}"
    );
    assert!(
        text.to_lowercase().contains("refused"),
        "the cause is shown: {text}"
    );
}
