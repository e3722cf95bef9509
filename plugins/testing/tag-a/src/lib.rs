//! Hot-reload test plugin, build "a": records each message it processes as tagged "a" (see
//! `fleetgate-test-tag` for the config and the files it writes).

struct A;

impl test_tag::Tag for A {
    const TAG: &'static str = "a";
}

fleetgate_sdk::export_service!(test_tag::Tagger<A>);
