//! The task-control and workflow suites on `memory://`.

use task_core::App;
use task_core::testing::control::AppHarness;

async fn setup() -> AppHarness {
    let memory = App::memory();
    let builder = App::builder().broker(memory.broker().clone()).backend(memory.backend().clone());
    AppHarness { builder, keep_alive: None }
}

task_core::control_tests!(setup);
task_core::workflow_tests!(setup);
