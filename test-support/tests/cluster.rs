//! The private Redis Cluster fixture: three primaries that share the slots, keys of one
//! hash tag on one node, keys of different tags spread.

use std::collections::HashSet;

use test_support::RedisCluster;

#[test]
fn a_private_cluster_shares_the_slots_and_keeps_a_tag_on_one_node() {
    let cluster = RedisCluster::start(3, 0);
    assert_eq!(cluster.nodes.len(), 3);
    for node in &cluster.nodes {
        let info = node.cli(&["CLUSTER", "INFO"]);
        assert!(info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3"), "{info}");
    }
    let url = cluster.url();
    assert!(url.starts_with("redis+cluster://127.0.0.1:") && url.matches(',').count() == 2, "{url}");
    let port = |key: &str| cluster.owner_of(key).map(test_support::RedisServer::port).expect("an owner");
    assert_eq!(port("celerity:{emails}:ready:0"), port("celerity:{emails}:wake"), "one tag, one node");
    let owners: HashSet<u16> = (0..32).map(|i| port(&format!("celerity:{{q{i}}}:wake"))).collect();
    assert_eq!(owners.len(), 3, "32 queues' tags spread over the three primaries");
}
