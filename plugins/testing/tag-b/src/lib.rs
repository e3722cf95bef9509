//! Hot-reload test plugin, build "b": records each message it processes as tagged "b" (see
//! `fleetgate-test-tag` for the config and the files it writes).

struct B;

impl test_tag::Tag for B {
    const TAG: &'static str = "b";
}

fleetgate_sdk::export_service!(test_tag::Tagger<B>);
