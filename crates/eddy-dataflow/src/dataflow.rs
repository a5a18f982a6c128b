//! The dataflow graph: nodes hold operators, edges carry change batches.
//!
//! Node ids grow with creation and a node is always created after its
//! inputs, so ascending id order is a topological order. One step delivers
//! the epoch's pending input node by node in that order and closes each node
//! with a barrier; when it returns, every node has emitted all its changes for
//! the epoch.

use std::collections::BTreeMap;

use crate::{ChangeBatch, Error, Operator, Result};

/// Identifies a node in a [`Dataflow`].
pub type NodeId = u64;

struct Node {
    operator: Box<dyn Operator>,
    inputs: Vec<NodeId>,
    owner: String,
    pending: Vec<(usize, ChangeBatch)>,
    observed: bool,
}

/// Changes that observed nodes emitted during one step, by node.
pub type StepOutput = BTreeMap<NodeId, Vec<ChangeBatch>>;

/// A graph of incremental operators.
#[derive(Default)]
pub struct Dataflow {
    nodes: BTreeMap<NodeId, Node>,
    next_id: NodeId,
}

impl std::fmt::Debug for Dataflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataflow")
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl Dataflow {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a node fed by `inputs` (input `i` of the operator is `inputs[i]`).
    /// `owner` names the catalog object the node belongs to.
    pub fn add(
        &mut self,
        owner: &str,
        operator: Box<dyn Operator>,
        inputs: Vec<NodeId>,
    ) -> Result<NodeId> {
        if let Some(missing) = inputs.iter().find(|id| !self.nodes.contains_key(id)) {
            return Err(Error::internal(format!(
                "dataflow input node {missing} missing"
            )));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.insert(
            id,
            Node {
                operator,
                inputs,
                owner: owner.to_string(),
                pending: Vec::new(),
                observed: false,
            },
        );
        Ok(id)
    }

    /// Report this node's output in every [`StepOutput`].
    pub fn observe(&mut self, id: NodeId) -> Result<()> {
        self.node_mut(id)?.observed = true;
        Ok(())
    }

    /// Queue changes directly on input 0 of node `id` (used for sources).
    pub fn push(&mut self, id: NodeId, changes: ChangeBatch) -> Result<()> {
        if !changes.is_empty() {
            self.node_mut(id)?.pending.push((0, changes));
        }
        Ok(())
    }

    /// Remove every node owned by `owner`.
    pub fn remove_owner(&mut self, owner: &str) {
        self.nodes.retain(|_, node| node.owner != owner);
    }

    /// Remove every node.
    pub fn clear(&mut self) {
        self.nodes.clear();
    }

    /// Deliver all pending changes and close the epoch at every node.
    ///
    /// An operator that panics fails the step like an error would: the
    /// caller must then discard this dataflow's state, as after any error.
    pub fn step(&mut self) -> Result<StepOutput> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step_nodes())) {
            Ok(result) => result,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                Err(Error::internal(format!("operator panicked: {message}")))
            }
        }
    }

    fn step_nodes(&mut self) -> Result<StepOutput> {
        let mut output = StepOutput::new();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let mut emitted = Vec::new();
        for id in ids {
            let node = self.node_mut(id)?;
            for (input, changes) in std::mem::take(&mut node.pending) {
                node.operator.on_changes(input, changes, &mut emitted)?;
            }
            node.operator.on_barrier(&mut emitted)?;
            emitted.retain(|changes| !changes.is_empty());
            if emitted.is_empty() {
                continue;
            }
            if node.observed {
                output
                    .entry(id)
                    .or_default()
                    .extend(emitted.iter().cloned());
            }
            for (_, consumer) in self.nodes.range_mut(id + 1..) {
                for (input, source) in consumer.inputs.iter().enumerate() {
                    if *source == id {
                        consumer
                            .pending
                            .extend(emitted.iter().map(|c| (input, c.clone())));
                    }
                }
            }
            emitted.clear();
        }
        Ok(output)
    }

    /// Render the subtree under `root` as an indented plan, one operator a line.
    pub fn explain(&self, root: NodeId) -> Result<String> {
        let mut lines = Vec::new();
        self.explain_into(root, 0, &mut lines)?;
        Ok(lines.join("\n"))
    }

    fn explain_into(&self, id: NodeId, depth: usize, lines: &mut Vec<String>) -> Result<()> {
        let node = self.node(id)?;
        let details = node.operator.describe();
        let indent = "  ".repeat(depth);
        if details.is_empty() {
            lines.push(format!("{indent}{}", node.operator.name()));
        } else {
            lines.push(format!("{indent}{}: {details}", node.operator.name()));
        }
        for input in &node.inputs {
            // Stop at another object's node: a scan of a table or view.
            if self.node(*input)?.owner == node.owner {
                self.explain_into(*input, depth + 1, lines)?;
            }
        }
        Ok(())
    }

    fn node(&self, id: NodeId) -> Result<&Node> {
        self.nodes
            .get(&id)
            .ok_or_else(|| Error::internal(format!("dataflow node {id} missing")))
    }

    fn node_mut(&mut self, id: NodeId) -> Result<&mut Node> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| Error::internal(format!("dataflow node {id} missing")))
    }
}
