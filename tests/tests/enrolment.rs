//! A streaming client enrols and is listed with its labels.

use std::time::Duration;

use fleetgate_tests::admin::label_strings;
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks};

#[tokio::test]
async fn streaming_client_enrols_with_labels() {
    let server = Server::start(ServerOptions::default()).await;
    let client = GoClient::start(
        &server,
        ClientOptions {
            labels: vec!["e2e-custom".into()],
            ..Default::default()
        },
    )
    .await;
    let id = client.client_id().await;
    let admin = server.admin().await;

    // Enrolment happens on the first contact; the ClientInfo (same labels) follows within ~1 s.
    let listed = checks::enrolled(&admin, &id, Duration::from_secs(30)).await;
    let want = ["client:amd64", "client:e2e-custom", "client:linux"];
    let labels =
        fleetgate_tests::eventually(Duration::from_secs(15), "the client's labels", || async {
            let all = admin.list_clients(&[]).await?;
            let c = all
                .iter()
                .find(|c| c.client_id == id)
                .ok_or_else(|| anyhow::anyhow!("client vanished"))?;
            let l = label_strings(c);
            anyhow::ensure!(l == want, "labels are {l:?}");
            Ok(l)
        })
        .await;
    assert_eq!(labels, want);
    assert!(
        listed.last_contact_time.is_some(),
        "ListClients has no last_contact_time: {listed:?}"
    );
    assert!(!listed.blacklisted);

    // Listing by id returns the same labels (the MySQL bug of the Go server is not copied).
    let by_id = admin
        .list_clients(std::slice::from_ref(&id))
        .await
        .expect("ListClients by id");
    assert_eq!(by_id.len(), 1, "ListClients([id]) returned {by_id:?}");
    assert_eq!(label_strings(&by_id[0]), want);

    // The contact is recorded, from the loopback address, and it is a streaming contact.
    let contacts = admin.contacts(&id).await.expect("ListClientContacts");
    assert!(!contacts.is_empty(), "no contact recorded");
    assert!(
        contacts
            .iter()
            .all(|c| c.observed_address.starts_with("127.0.0.1:")),
        "observed addresses: {:?}",
        contacts
            .iter()
            .map(|c| &c.observed_address)
            .collect::<Vec<_>>()
    );
    checks::contact_recorded(&admin, &id, true, Duration::from_secs(15)).await;
}
