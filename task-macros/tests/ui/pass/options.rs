use task_core::{task, Task, TaskResult};

#[task(name = "media.resize", queue = "media", max_retries = 5, time_limit = 30)]
fn resize(path: String, width: u32) -> TaskResult<String> {
    Ok(format!("{path}@{width}"))
}

fn main() {
    assert_eq!(resize::NAME, "media.resize");
    let options = <resize::Task as Task>::OPTIONS;
    assert_eq!(options.queue, Some("media"));
    assert_eq!(options.max_retries, Some(5));
    assert_eq!(options.time_limit, Some(std::time::Duration::from_secs(30)));
}
