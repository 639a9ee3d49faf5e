use task_core::{task, TaskResult};

#[task]
async fn first<T: Clone>(items: Vec<T>) -> TaskResult<usize> {
    Ok(items.len())
}

fn main() {}
