use task_core::{task, TaskResult};

pub struct Connection;

#[task]
async fn query(conn: Connection) -> TaskResult<()> {
    let _ = conn;
    Ok(())
}

fn main() {}
