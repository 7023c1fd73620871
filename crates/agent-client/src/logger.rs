//! [`ExecutionLogger`]: what an agent does on a task, step by step, for humans and other
//! agents to watch. It joins the task's collaboration when it starts, logs each step as
//! `{"step", "action", "action_input", "observation", …}` (the ReAct shape agent frameworks
//! produce), and leaves the collaboration when finished (or, best effort, when dropped).

use crate::client::GatewayClient;
use crate::error::Result;
use mcp_api::requests::{CollaborationRequest, LogStepRequest};
use mcp_api::responses::{CollaborationResponse, LogStepResponse};
use serde_json::{Map, Value, json};

/// Logs an agent's execution steps on one task. See the module documentation.
#[derive(Debug)]
pub struct ExecutionLogger {
    client: GatewayClient,
    task_id: String,
    /// The agent the gateway acknowledged on join (the configured one, or the token's).
    agent_id: String,
    steps: u64,
    finished: bool,
}

impl GatewayClient {
    /// Joins `task_id`'s collaboration and returns a logger for its steps.
    pub async fn execution_logger(&self, task_id: &str) -> Result<ExecutionLogger> {
        ExecutionLogger::start(self.clone(), task_id).await
    }
}

impl ExecutionLogger {
    /// Joins `task_id`'s collaboration.
    pub async fn start(client: GatewayClient, task_id: &str) -> Result<ExecutionLogger> {
        let joined = client
            .join_collaboration(CollaborationRequest {
                task_id: task_id.to_owned(),
                agent_id: None,
            })
            .await?;
        Ok(ExecutionLogger {
            client,
            task_id: joined.task_id,
            agent_id: joined.agent_id,
            steps: 0,
            finished: false,
        })
    }

    /// The acting agent, as the gateway named it.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The task.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// How many steps this logger has logged.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Logs one step: what the agent did (`action`, e.g. a tool name), with what input,
    /// and what it observed.
    pub async fn log(
        &mut self,
        action: &str,
        action_input: impl Into<Value>,
        observation: impl Into<Value>,
    ) -> Result<LogStepResponse> {
        self.log_with(action, action_input, observation, Map::new())
            .await
    }

    /// As [`ExecutionLogger::log`], with extra fields (`thought`, `duration_ms`, `status`…)
    /// beside the standard ones.
    pub async fn log_with(
        &mut self,
        action: &str,
        action_input: impl Into<Value>,
        observation: impl Into<Value>,
        extra: Map<String, Value>,
    ) -> Result<LogStepResponse> {
        let mut step = extra;
        step.insert("step".into(), json!(self.steps + 1));
        step.insert("action".into(), json!(action));
        step.insert("action_input".into(), action_input.into());
        step.insert("observation".into(), observation.into());
        self.log_raw(Value::Object(step)).await
    }

    /// Logs a step object as it is (it must be a JSON object).
    pub async fn log_raw(&mut self, step: Value) -> Result<LogStepResponse> {
        let r = self
            .client
            .log_step(LogStepRequest {
                task_id: self.task_id.clone(),
                step,
                agent_id: None,
            })
            .await?;
        self.steps += 1;
        Ok(r)
    }

    /// Leaves the collaboration.
    pub async fn finish(mut self) -> Result<CollaborationResponse> {
        self.finished = true;
        self.client.leave_collaboration(self.leave_request()).await
    }

    fn leave_request(&self) -> CollaborationRequest {
        CollaborationRequest {
            task_id: self.task_id.clone(),
            agent_id: None,
        }
    }
}

impl Drop for ExecutionLogger {
    /// Leaves the collaboration in the background when [`ExecutionLogger::finish`] was not
    /// called (an early return, a panic): best effort, so the session does not show a
    /// departed agent as present.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let req = self.leave_request();
            rt.spawn(async move {
                if let Err(e) = client.leave_collaboration(req).await {
                    tracing::debug!(error = %e, "leave of a dropped execution logger failed");
                }
            });
        }
    }
}
