//! The durable store's messages (`DurableMessages`, issue #17), on every durable backend:
//! who finds a message in its inbox, read state per reader, ids in commit order, the audit
//! record; and the long poll of `Service::read_messages` over each backend combination.

use crate::fixtures::{DurableFixture, ServiceFixture, durable, service};
use mcp_api::requests::{ReadMessagesRequest, Recipients, SendMessageRequest};
use mcp_domain::store::durable::{AuditFilter, InboxQuery, NewMessage};
use mcp_domain::{Actor, AgentId, TaskId};
use std::time::Duration;

crate::per_backend!(durable; [postgres, sqlite];
    inboxes_hold_what_is_addressed_to_their_reader,
    read_state_is_per_reader,
    concurrent_senders_get_ids_in_commit_order,
);

crate::per_backend!(service; [deployed, embedded];
    a_long_poll_answers_when_a_message_arrives,
);

fn msg<'a>(task: &'a TaskId, from: &'a str, to: &'a [String], subject: &'a str) -> NewMessage<'a> {
    NewMessage {
        task,
        from,
        broadcast: to.is_empty(),
        to,
        subject,
        body: "body",
        thread_id: None,
        reply_to: None,
        importance: "normal",
        request_id: None,
    }
}

fn inbox<'a>(agent: &'a str) -> InboxQuery<'a> {
    InboxQuery {
        agent,
        task: None,
        tasks_in: None,
        after: 0,
        unread_only: false,
        limit: 100,
    }
}

async fn inboxes_hold_what_is_addressed_to_their_reader(f: &DurableFixture) {
    let s = &f.store;
    let (t, u) = (TaskId::parse("t").unwrap(), TaskId::parse("u").unwrap());
    let bob = ["bob".to_string()];
    let direct = s.send_message(&msg(&t, "alice", &bob, "d")).await.unwrap();
    assert_eq!(
        (
            direct.thread_id.as_str(),
            direct.to.as_slice(),
            direct.read_at
        ),
        (direct.id.to_string().as_str(), &bob[..], None),
        "a new thread is named by its message"
    );
    let all = s.send_message(&msg(&t, "alice", &[], "all")).await.unwrap();
    assert!(all.broadcast && all.to.is_empty() && all.id > direct.id);
    let elsewhere = s.send_message(&msg(&u, "carol", &[], "u")).await.unwrap();
    let threaded = s
        .send_message(&NewMessage {
            thread_id: Some("design"),
            reply_to: Some(direct.id),
            ..msg(&t, "bob", &["alice".to_string()], "re")
        })
        .await
        .unwrap();
    assert_eq!(
        (threaded.thread_id.as_str(), threaded.reply_to),
        ("design", Some(direct.id))
    );

    let ids = |v: Vec<mcp_domain::store::durable::StoredMessage>| {
        v.into_iter().map(|m| m.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(s.inbox(&inbox("bob")).await.unwrap()),
        [direct.id, all.id, elsewhere.id]
    );
    assert_eq!(
        ids(s.inbox(&inbox("alice")).await.unwrap()),
        [elsewhere.id, threaded.id]
    );
    assert_eq!(
        ids(s.inbox(&inbox("dave")).await.unwrap()),
        [all.id, elsewhere.id]
    );
    let scoped = ["t".to_string()];
    let q = InboxQuery {
        tasks_in: Some(&scoped),
        after: direct.id,
        ..inbox("bob")
    };
    assert_eq!(ids(s.inbox(&q).await.unwrap()), [all.id]);
    let q = InboxQuery {
        task: Some("u"),
        limit: 1,
        ..inbox("bob")
    };
    assert_eq!(ids(s.inbox(&q).await.unwrap()), [elsewhere.id]);
    let read = s.inbox(&inbox("bob")).await.unwrap();
    assert_eq!(
        (read[0].subject.as_str(), read[0].body.as_str()),
        ("d", "body")
    );

    // Readable by its sender, its recipients and (a broadcast) anyone; within a scope.
    assert!(
        s.message_for(direct.id, "alice", None)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.message_for(direct.id, "bob", None)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.message_for(direct.id, "eve", None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.message_for(all.id, "eve", None).await.unwrap().is_some());
    assert!(
        s.message_for(all.id, "eve", Some(&["u".to_string()]))
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.message_for(999_999, "bob", None).await.unwrap().is_none());

    let audit = s
        .audit(&AuditFilter {
            task: Some("t"),
            action: Some("send_message"),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 3, "one audit record per message");
}

async fn read_state_is_per_reader(f: &DurableFixture) {
    let s = &f.store;
    let t = TaskId::parse("t").unwrap();
    let all = s.send_message(&msg(&t, "alice", &[], "all")).await.unwrap();
    let first = s.ack_message(all.id, "bob").await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        s.ack_message(all.id, "bob").await.unwrap(),
        first,
        "the first time stays"
    );
    let bob = s.inbox(&inbox("bob")).await.unwrap();
    assert_eq!(bob[0].read_at, Some(first));
    let unread = InboxQuery {
        unread_only: true,
        ..inbox("bob")
    };
    assert!(s.inbox(&unread).await.unwrap().is_empty());
    let carol = InboxQuery {
        unread_only: true,
        ..inbox("carol")
    };
    assert_eq!(
        s.inbox(&carol).await.unwrap().len(),
        1,
        "carol has not read it"
    );
    assert_eq!(
        s.message_for(all.id, "bob", None)
            .await
            .unwrap()
            .unwrap()
            .read_at,
        Some(first)
    );
}

/// Ids are assigned in commit order: a reader that polls with its cursor while senders
/// race never skips a message.
async fn concurrent_senders_get_ids_in_commit_order(f: &DurableFixture) {
    let t = TaskId::parse("t").unwrap();
    let to = vec!["bob".to_string()];
    let senders: Vec<_> = (0..4)
        .map(|i| {
            let (store, t, to) = (f.store.clone(), t.clone(), to.clone());
            tokio::spawn(async move {
                for n in 0..25 {
                    let subject = format!("{i}-{n}");
                    store
                        .send_message(&msg(&t, "alice", &to, &subject))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    let mut cursor = 0;
    while seen.len() < 100 {
        let page = f
            .store
            .inbox(&InboxQuery {
                after: cursor,
                ..inbox("bob")
            })
            .await
            .unwrap();
        for m in page {
            cursor = m.id;
            seen.push(m.id);
        }
        tokio::task::yield_now().await;
    }
    for s in senders {
        s.await.unwrap();
    }
    let all: Vec<i64> = f
        .store
        .inbox(&inbox("bob"))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(
        seen, all,
        "the cursor reader saw every message once, in order"
    );
}

async fn a_long_poll_answers_when_a_message_arrives(f: &ServiceFixture) {
    let service = f.service.clone();
    let bob = Actor::trusted(AgentId::parse("bob").unwrap());
    let alice = Actor::trusted(AgentId::parse("alice").unwrap());
    let poll = tokio::spawn(async move {
        service
            .read_messages(
                &bob,
                ReadMessagesRequest {
                    task_id: Some("t".into()),
                    wait_sec: Some(20.0),
                    ..ReadMessagesRequest::default()
                },
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!poll.is_finished());
    let sent = f
        .service
        .send_message(
            &alice,
            SendMessageRequest {
                task_id: "t".into(),
                to: Recipients::Agents(vec!["bob".into()]),
                subject: "hi".into(),
                ..SendMessageRequest::default()
            },
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the poll answers at once")
        .unwrap()
        .unwrap();
    assert_eq!(got.messages[0].id, sent.message_id);
    assert_eq!(got.cursor, sent.message_id);
    assert_eq!(f.service.inbox.waiting(), 0, "the waiter unregistered");
}
