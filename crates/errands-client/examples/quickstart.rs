//! A small service that enqueues a job and processes it.
//!
//! Start a server (`cargo run --release -- serve`), then:
//!
//! ```sh
//! cargo run -p errands-client --example quickstart
//! ```

use std::time::Duration;

use errands_client::{Client, EnqueueOptions, HandlerError, Job, JobContext, Worker};
use serde::{Deserialize, Serialize};

/// Arguments of the `thumbnail` job; the struct is the job's payload.
#[derive(Debug, Serialize, Deserialize)]
struct Thumbnail {
    image: String,
    width: u32,
}

impl Job for Thumbnail {
    const KIND: &'static str = "thumbnail";
    type Output = String;

    fn options() -> EnqueueOptions {
        EnqueueOptions::new().queue("images").max_attempts(3)
    }
}

async fn make_thumbnail(ctx: JobContext, job: Thumbnail) -> Result<String, HandlerError> {
    ctx.progress(10.0, "decoding").await;
    if job.width == 0 {
        return Err(HandlerError::permanent(
            "BadWidth",
            "width must be positive",
        ));
    }
    ctx.progress(90.0, "encoding").await;
    Ok(format!("{}.{}px.webp", job.image, job.width))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::from_env()?;

    let worker = Worker::builder(client.clone())
        .queues(["images"])
        .capacity(4)
        .handle(make_thumbnail)
        .build();
    let stop = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());

    let job = Thumbnail {
        image: "cat.png".into(),
        width: 320,
    };
    let handle = client.enqueue(&job).await?;
    println!("enqueued {}", handle.id);
    let output = client.result(&handle, Duration::from_secs(30)).await?;
    println!("result: {output}");

    stop.shutdown();
    running.await??;
    Ok(())
}
