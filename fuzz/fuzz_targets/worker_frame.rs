//! The worker socket's frame parser on arbitrary text: it must never panic, and every frame it
//! accepts must serialise back to text that parses to the same messages, so what the server
//! logs or relays means what the worker sent.
#![no_main]

use errands_core::protocol::{parse_worker_frame, WorkerMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 by the time the parser sees them.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(messages) = parse_worker_frame(text) else {
        return;
    };
    assert_round_trips_as_batch(&messages);
    for message in &messages {
        assert_round_trips_alone(message);
    }
});

fn assert_round_trips_as_batch(messages: &[WorkerMessage]) {
    let text = serde_json::to_string(messages).expect("accepted messages serialise");
    let again = parse_worker_frame(&text).expect("a serialised batch parses");
    assert_eq!(again, messages, "batch {text}");
}

fn assert_round_trips_alone(message: &WorkerMessage) {
    let text = serde_json::to_string(message).expect("an accepted message serialises");
    let again = parse_worker_frame(&text).expect("a serialised message parses");
    assert_eq!(again, std::slice::from_ref(message), "message {text}");
}
