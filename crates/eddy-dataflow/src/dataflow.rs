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

/// What an isolated step did: the output of the nodes that completed the
/// epoch, and the owners that failed with their errors (in the order they
/// failed).
#[derive(Debug, Default)]
pub struct StepReport {
    /// Output of observed nodes.
    pub output: StepOutput,
    /// Failed owners and why.
    pub failed: Vec<(String, Error)>,
}

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

    /// Drop every node's undelivered input (after a failed step).
    pub fn clear_pending(&mut self) {
        for node in self.nodes.values_mut() {
            node.pending.clear();
        }
    }

    /// Deliver all pending changes and close the epoch at every node.
    ///
    /// An operator that fails or panics fails the step: the caller must then
    /// discard this dataflow's state, as after any error.
    pub fn step(&mut self) -> Result<StepOutput> {
        let report = self.run_step(false);
        match report.failed.into_iter().next() {
            Some((_, error)) => Err(error),
            None => Ok(report.output),
        }
    }

    /// Like [`Dataflow::step`], but a failing operator fails only its owner:
    /// the owner's remaining nodes, and every node that reads a failed
    /// owner's node, skip the epoch, and the rest of the graph completes it.
    /// The failed owners' nodes are removed. Because a view's root is its
    /// last node, a failed view has emitted nothing downstream this epoch.
    pub fn step_isolated(&mut self) -> StepReport {
        let report = self.run_step(true);
        for (owner, _) in &report.failed {
            self.remove_owner(owner);
        }
        report
    }

    fn run_step(&mut self, isolate: bool) -> StepReport {
        let mut output = StepOutput::new();
        let mut failed: Vec<(String, Error)> = Vec::new();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let mut emitted = Vec::new();
        for id in ids {
            let Some(node) = self.nodes.get_mut(&id) else {
                continue;
            };
            let owner_failed = failed.iter().any(|(owner, _)| *owner == node.owner);
            if owner_failed {
                node.pending.clear();
                continue;
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for (input, changes) in std::mem::take(&mut node.pending) {
                    node.operator.on_changes(input, changes, &mut emitted)?;
                }
                node.operator.on_barrier(&mut emitted)
            }));
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error),
                Err(panic) => Some(panic_error(panic)),
            };
            if let Some(error) = error {
                emitted.clear();
                failed.push((node.owner.clone(), error));
                if !isolate {
                    break;
                }
                continue;
            }
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
        if isolate {
            // Readers of a failed owner's nodes cannot go on either.
            loop {
                let dependent = self.nodes.values().find(|node| {
                    !failed.iter().any(|(owner, _)| *owner == node.owner)
                        && node.inputs.iter().any(|input| {
                            self.nodes
                                .get(input)
                                .is_some_and(|i| failed.iter().any(|(owner, _)| *owner == i.owner))
                        })
                });
                let Some(node) = dependent else {
                    break;
                };
                let owner = node.owner.clone();
                let cause = failed
                    .iter()
                    .find(|(o, _)| {
                        node.inputs
                            .iter()
                            .any(|input| self.nodes.get(input).is_some_and(|i| i.owner == *o))
                    })
                    .map_or_else(String::new, |(o, _)| o.clone());
                failed.push((
                    owner,
                    Error::internal(format!("an object it reads, \"{cause}\", failed")),
                ));
            }
        }
        // A failed owner's output of this epoch is incomplete: drop it.
        output.retain(|id, _| {
            self.nodes
                .get(id)
                .is_some_and(|node| !failed.iter().any(|(owner, _)| *owner == node.owner))
        });
        StepReport { output, failed }
    }

    /// The nodes owned by `owner`, in creation order.
    pub fn nodes_of(&self, owner: &str) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, node)| node.owner == owner)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The operator of node `id`, to save or load its state.
    pub fn operator_mut(&mut self, id: NodeId) -> Result<&mut dyn Operator> {
        Ok(self.node_mut(id)?.operator.as_mut())
    }

    /// True if every operator `owner` owns can save its state.
    pub fn checkpointable(&self, owner: &str) -> bool {
        self.nodes
            .values()
            .filter(|node| node.owner == owner)
            .all(|node| node.operator.checkpointing() != crate::state::Checkpointing::Unsupported)
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

fn panic_error(panic: Box<dyn std::any::Any + Send>) -> Error {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    Error::internal(format!("operator panicked: {message}"))
}
