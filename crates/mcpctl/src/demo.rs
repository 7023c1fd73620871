//! `mcpctl demo`: the seed's "Coder + QA" collaboration, played through the gateway so a person
//! can watch it in the console. A Coder and a QA agent join a new task, claim, write and edit
//! files, collide on the Coder's lease (the QA's write and claim are refused, and the console
//! shows both as conflicts), resolve it by waiting for the release, log their steps, finish
//! the task and leave.

use crate::Out;
use mcp_agent_client::requests::{
    ClaimFileRequest, CollaborationRequest, CreateTaskRequest, FileEditRequest, FileWriteRequest,
    LogStepRequest, ReleaseFileRequest, UpdateTaskRequest,
};
use mcp_agent_client::{ClientConfig, ClientError, ErrorCode, GatewayClient};
use serde_json::{Value, json};
use std::time::Duration;

const GREET_V1: &str = "def greet(name):\n    return \"Hello \" + name\n";
const TEST: &str = "from greet import greet\n\n\ndef test_greet():\n    assert greet(\"Ada\") == \"Hello, Ada!\"\n";

/// One agent of the demo: its client (acting as `agent_id`) and its name.
struct Agent {
    client: GatewayClient,
    name: &'static str,
}

/// Plays the demo on `task` (a new task), `pace` between steps; returns the exit code.
pub async fn demo(
    base: &GatewayClient,
    task: &str,
    pace: Duration,
    out: Out,
) -> Result<u8, ClientError> {
    let agent = |name: &'static str| -> Result<Agent, ClientError> {
        let config = ClientConfig {
            agent_id: Some(name.to_owned()),
            ..base.config().clone()
        };
        Ok(Agent {
            client: GatewayClient::new(config)?,
            name,
        })
    };
    let (coder, qa) = (agent("coder")?, agent("qa")?);
    base.create_task(&CreateTaskRequest {
        id: Some(task.to_owned()),
        title: "Coder + QA: make greet() polite".into(),
        assigned_agent_id: Some("coder".into()),
        ..CreateTaskRequest::default()
    })
    .await?;
    let url = format!(
        "{}/ui/#/task/{task}",
        base.base_url().as_str().trim_end_matches('/')
    );
    out.progress(format!(
        "Watch it live: {}",
        out.paint(url, &console::Style::new().bold().underlined())
    ));
    let pause = || tokio::time::sleep(pace);
    let mut conflicts = 0;

    for a in [&coder, &qa] {
        a.client
            .join_collaboration(CollaborationRequest::new(task))
            .await?;
        say(out, a, "joined the task");
    }
    pause().await;
    step(
        &coder,
        task,
        "plan",
        "greet() must say 'Hello, <name>!'; I own src/greet.py",
        out,
    )
    .await?;
    let lease = coder
        .client
        .claim_file(ClaimFileRequest {
            timeout_sec: Some(60),
            ..ClaimFileRequest::new(task, "src/greet.py")
        })
        .await?;
    say(
        out,
        &coder,
        &format!("claimed src/greet.py (fence {})", lease.fence),
    );
    pause().await;
    coder
        .client
        .file_write(FileWriteRequest {
            fence: Some(lease.fence),
            ..FileWriteRequest::new(task, "src/greet.py", GREET_V1)
        })
        .await?;
    say(out, &coder, "wrote src/greet.py v1");
    pause().await;

    // The QA writes its test (a free path), then wants to fix the code itself: refused.
    qa.client
        .file_write(FileWriteRequest::new(task, "tests/test_greet.py", TEST))
        .await?;
    say(out, &qa, "wrote tests/test_greet.py");
    step(
        &qa,
        task,
        "test",
        "test_greet fails: 'Hello Ada' != 'Hello, Ada!'",
        out,
    )
    .await?;
    pause().await;
    let fix = FileWriteRequest::new(task, "src/greet.py", "# qa's quick fix\n");
    conflicts += refused(
        out,
        &qa,
        "write src/greet.py",
        qa.client.file_write(fix).await,
    )?;
    pause().await;
    let claim = ClaimFileRequest::new(task, "src/greet.py");
    conflicts += refused(
        out,
        &qa,
        "claim src/greet.py",
        qa.client.claim_file(claim).await,
    )?;
    step(
        &qa,
        task,
        "wait",
        "src/greet.py is the coder's; reported the failure instead",
        out,
    )
    .await?;
    pause().await;

    // The Coder fixes it under its lease and lets go.
    coder
        .client
        .file_edit(FileEditRequest {
            fence: Some(lease.fence),
            ..FileEditRequest::new(
                task,
                "src/greet.py",
                "return \"Hello \" + name",
                "return f\"Hello, {name}!\"",
            )
        })
        .await?;
    say(out, &coder, "edited src/greet.py (v2)");
    step(
        &coder,
        task,
        "fix",
        "use an f-string with the comma and the bang",
        out,
    )
    .await?;
    coder
        .client
        .release_file(ReleaseFileRequest::new(task, "src/greet.py"))
        .await?;
    say(out, &coder, "released src/greet.py");
    pause().await;

    // Now the QA may take the file: it adds a docstring under its own lease.
    let lease = qa
        .client
        .claim_file(ClaimFileRequest::new(task, "src/greet.py"))
        .await?;
    say(
        out,
        &qa,
        &format!("claimed src/greet.py (fence {})", lease.fence),
    );
    qa.client
        .file_edit(FileEditRequest {
            fence: Some(lease.fence),
            ..FileEditRequest::new(
                task,
                "src/greet.py",
                "def greet(name):\n",
                "def greet(name):\n    \"\"\"A polite greeting.\"\"\"\n",
            )
        })
        .await?;
    say(out, &qa, "edited src/greet.py (v3)");
    qa.client
        .release_file(ReleaseFileRequest::new(task, "src/greet.py"))
        .await?;
    step(&qa, task, "review", "test_greet passes; approved", out).await?;
    pause().await;

    base.update_task(
        task,
        &UpdateTaskRequest {
            status: Some("done".into()),
            ..UpdateTaskRequest::default()
        },
    )
    .await?;
    for a in [&coder, &qa] {
        a.client
            .leave_collaboration(CollaborationRequest::new(task))
            .await?;
        say(out, a, "left the task");
    }
    out.emit(
        &json!({"success": true, "task_id": task, "conflicts": conflicts, "status": "done"}),
        || format!("demo done: task {task}, {conflicts} conflicts seen and resolved"),
    );
    Ok(crate::EXIT_OK)
}

/// One line of the play: the agent's name in its colour on a terminal.
fn say(out: Out, a: &Agent, what: &str) {
    let colour = match a.name {
        "coder" => console::Style::new().cyan().bold(),
        _ => console::Style::new().magenta().bold(),
    };
    out.progress(format!(
        "{}  {what}",
        out.paint(format!("{:>5}", a.name), &colour)
    ));
}

async fn step(
    a: &Agent,
    task: &str,
    action: &str,
    detail: &str,
    out: Out,
) -> Result<(), ClientError> {
    let step: Value = json!({"action": action, "detail": detail});
    a.client.log_step(LogStepRequest::new(task, step)).await?;
    say(out, a, &format!("step {action}: {detail}"));
    Ok(())
}

/// Expects a refusal because of another agent's lease (1 when it came); anything else fails.
fn refused<T>(
    out: Out,
    a: &Agent,
    what: &str,
    r: Result<T, ClientError>,
) -> Result<u32, ClientError> {
    match r {
        Err(e) if e.code() == ErrorCode::Locked => {
            let refused = out.paint("refused", &console::Style::new().red().bold());
            say(out, a, &format!("{what}: {refused}, {e}"));
            Ok(1)
        }
        Err(e) => Err(e),
        Ok(_) => Err(ClientError::Config(format!(
            "{what} by {} was accepted while the coder held the lease",
            a.name
        ))),
    }
}
