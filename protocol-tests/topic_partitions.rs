//! DescribeTopicPartitions (KIP-966): topics in name order, pages bounded by the partition limit,
//! and a cursor that resumes where the last page stopped, as Kafka's broker answers.

use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use kafka_protocol::messages::*;

use crate::harness::{Cairn, Client};
use crate::util::*;

/// (name, error code, partition indexes) per topic, and the next cursor.
type Page = (Vec<(String, i16, Vec<i32>)>, Option<(String, i32)>);

fn describe(
    client: &mut Client,
    topics: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> (Page, DescribeTopicPartitionsResponse) {
    let response = client.call(
        0,
        &DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| TopicRequest::default().with_name(topic_name(t)))
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                Cursor::default()
                    .with_topic_name(topic_name(t))
                    .with_partition_index(p)
            })),
    );
    let topics = response
        .topics
        .iter()
        .map(|t| {
            let name = t.name.as_ref().expect("name").0.to_string();
            let partitions = t.partitions.iter().map(|p| p.partition_index).collect();
            (name, t.error_code, partitions)
        })
        .collect();
    let next = response
        .next_cursor
        .as_ref()
        .map(|c| (c.topic_name.0.to_string(), c.partition_index));
    ((topics, next), response)
}

fn row(name: &str, error: i16, partitions: &[i32]) -> (String, i16, Vec<i32>) {
    (name.to_string(), error, partitions.to_vec())
}

#[test]
fn describe_topic_partitions_pages_in_name_order() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(&mut client, "dtp-a", 3, &[]);
    create_topic(&mut client, "dtp-b", 2, &[]);
    create_topic(&mut client, "dtp-c", 1, &[]);
    let asked = ["dtp-c", "dtp-a", "bad name!", "dtp-b", "nope", "dtp-a"];

    // Asked out of order and twice, answered once each in name order; the page ends inside a
    // topic, and the errors (INVALID_TOPIC_EXCEPTION) do not count against the limit.
    let ((topics, next), raw) = describe(&mut client, &asked, 4, None);
    assert_eq!(
        topics,
        [
            row("bad name!", 17, &[]),
            row("dtp-a", 0, &[0, 1, 2]),
            row("dtp-b", 0, &[0])
        ]
    );
    assert_eq!(next, Some(("dtp-b".to_string(), 1)));
    let a = &raw.topics[1];
    assert!(!a.topic_id.is_nil() && !a.is_internal);
    assert_eq!(a.partitions[2].leader_id.0, 1);
    assert_eq!(a.partitions[2].replica_nodes, [BrokerId(1)]);
    assert_eq!(a.partitions[2].isr_nodes, [BrokerId(1)]);
    // No authorizer: every topic operation (READ..ALTER_CONFIGS without CLUSTER_ACTION).
    assert_eq!(a.topic_authorized_operations, 0b1101_1111_1000);

    // The next page starts at the cursor; an unknown topic is UNKNOWN_TOPIC_OR_PARTITION; no
    // page after it.
    let ((topics, next), _) = describe(&mut client, &asked, 4, Some(("dtp-b", 1)));
    assert_eq!(
        topics,
        [
            row("dtp-b", 0, &[1]),
            row("dtp-c", 0, &[0]),
            row("nope", 3, &[])
        ]
    );
    assert_eq!(next, None);

    // A page that fills exactly at a topic's end points at the next topic's first partition.
    let ((topics, next), _) = describe(&mut client, &["dtp-a", "dtp-b"], 3, None);
    assert_eq!(topics, [row("dtp-a", 0, &[0, 1, 2])]);
    assert_eq!(next, Some(("dtp-b".to_string(), 0)));

    // A limit below one is taken as one, so a client paging on always moves forward.
    let ((topics, next), _) = describe(&mut client, &["dtp-a"], 0, None);
    assert_eq!(topics, [row("dtp-a", 0, &[0])]);
    assert_eq!(next, Some(("dtp-a".to_string(), 1)));

    // No topic named: every topic (ours among them), in name order; paging through them with
    // the cursor visits each partition exactly once.
    let ((topics, _), _) = describe(&mut client, &[], 100, None);
    let names: Vec<&str> = topics.iter().map(|t| t.0.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(
        names.contains(&"dtp-a") && names.contains(&"dtp-c"),
        "{names:?}"
    );
    let mut visited = Vec::new();
    let mut cursor: Option<(String, i32)> = None;
    loop {
        let ((topics, next), _) = describe(
            &mut client,
            &[],
            2,
            cursor.as_ref().map(|(t, p)| (t.as_str(), *p)),
        );
        for (name, _, partitions) in topics {
            visited.extend(partitions.into_iter().map(|p| (name.clone(), p)));
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let ours: Vec<_> = visited
        .iter()
        .filter(|(t, _)| t.starts_with("dtp-"))
        .map(|(t, p)| format!("{t}/{p}"))
        .collect();
    assert_eq!(
        ours,
        ["dtp-a/0", "dtp-a/1", "dtp-a/2", "dtp-b/0", "dtp-b/1", "dtp-c/0"]
    );

    // A cursor outside the topics asked for, or at a negative partition, fails the request:
    // INVALID_REQUEST for each topic asked for.
    let ((topics, _), _) = describe(&mut client, &["dtp-a"], 10, Some(("dtp-b", 0)));
    assert_eq!(topics, [row("dtp-a", 42, &[])]);
    let ((topics, _), _) = describe(&mut client, &["dtp-a"], 10, Some(("dtp-a", -1)));
    assert_eq!(topics, [row("dtp-a", 42, &[])]);
}
