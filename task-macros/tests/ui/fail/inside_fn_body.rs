use task_core::{task, TaskResult};

fn main() {
    #[task]
    async fn add(x: i64, y: i64) -> TaskResult<i64> {
        Ok(x + y)
    }
}
