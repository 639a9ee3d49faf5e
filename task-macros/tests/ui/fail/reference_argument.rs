use task_core::{task, TaskResult};

#[task]
async fn greet(name: &str) -> TaskResult<String> {
    Ok(format!("hello {name}"))
}

fn main() {}
