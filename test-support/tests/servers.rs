//! The helper itself: plain and TLS servers answer, and go away on drop.

use test_support::{Persistence, RedisServer};

#[test]
fn a_plain_server_answers_and_restarts_with_its_data() {
    let mut server = RedisServer::start_with(Persistence::AppendOnly);
    assert_eq!(server.cli(&["SET", "k", "v"]), "OK");
    server.restart();
    assert_eq!(server.cli(&["GET", "k"]), "v");
}

#[test]
fn a_tls_server_answers_over_tls() {
    let server = RedisServer::start_tls();
    assert!(server.url().starts_with("rediss://127.0.0.1:"));
    assert_eq!(server.cli(&["PING"]), "PONG");
}
