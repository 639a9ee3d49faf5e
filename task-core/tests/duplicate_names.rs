//! Two tasks with one name: the worker refuses to start and names both places.
//! (A test binary of its own: the duplicate is in its global registry.)

mod billing {
    use task_core::{TaskResult, task};

    #[task(name = "charge")]
    pub(crate) async fn charge(cents: u64) -> TaskResult<u64> {
        Ok(cents)
    }
}

mod legacy {
    use task_core::{TaskResult, task};

    #[task(name = "charge")]
    pub(crate) fn charge(cents: u64) -> TaskResult<u64> {
        Ok(cents * 2)
    }
}

#[tokio::test]
async fn the_worker_refuses_to_start_and_names_both_definitions() {
    let app = task_core::App::memory();
    let err = app.worker().run_until(std::future::pending()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, task_core::Error::DuplicateTasks(_)));
    assert!(text.contains("task name `charge` is registered twice"), "{text}");
    assert!(text.contains("duplicate_names::billing") && text.contains("duplicate_names::legacy"), "{text}");
    assert!(text.contains("tests/duplicate_names.rs:8") && text.contains("tests/duplicate_names.rs:17"), "{text}");
    // The functions themselves are fine to call.
    assert_eq!(billing::charge(1).await.unwrap() + legacy::charge(1).unwrap(), 3);
}
