//! Installing an object in the running engine: a table's node, a view's
//! or query sink's operators filled from their inputs' contents, and the
//! readers that bring sources in.

use std::collections::BTreeMap;
use std::sync::Arc;

use eddy_common::{Error, Result};
use eddy_connectors::source::SourceProgress;
use eddy_connectors::spec::SourceSpec;
use eddy_dataflow::operator::SourceOperator;
use eddy_dataflow::NodeId;
use tracing::warn;

use super::keys::KeyIndex;
use super::Writer;
use crate::catalog::{CatalogEntry, ObjectKind};
use crate::ingest::{Reader, SourceScan, Stored};
use crate::Relation;

impl Writer {
    /// Add table `entry`'s node (a scan its changes enter by) and, under a
    /// primary key, its key index (DML's; not a connector table's).
    pub(super) fn install_table(&mut self, entry: &CatalogEntry) -> Result<()> {
        let schema = eddy_dataflow::schema::nullable(&entry.schema);
        let node = self.dataflow.add(
            &entry.name,
            Box::new(SourceOperator::new(entry.name.clone(), schema)),
            vec![],
        )?;
        self.nodes.insert(entry.name.clone(), node);
        // A connector table's upserts keep its keys unique.
        if !entry.primary_key.is_empty() && entry.connector.is_none() {
            self.keys.insert(entry.name.clone(), KeyIndex::new(entry)?);
        }
        Ok(())
    }

    /// Install a connector table's node, contents and reader. Its node is
    /// a root, so what the reader brings in is folded into its contents
    /// like a materialized view's changes.
    pub(super) fn start_connector_table(
        &mut self,
        entry: &CatalogEntry,
        spec: &Arc<SourceSpec>,
    ) -> Result<()> {
        self.install_table(entry)?;
        let node = *self
            .nodes
            .get(&entry.name)
            .ok_or_else(|| Error::internal("connector table without a node"))?;
        self.dataflow.observe(node)?;
        self.roots.insert(node, entry.name.clone());
        self.working.relations.insert(
            entry.name.clone(),
            Relation::keyed(entry.schema.clone(), &entry.primary_key)?,
        );
        let envelope = spec.format.as_ref().and_then(|f| f.envelope());
        if envelope == Some(eddy_connectors::spec::Envelope::Upsert) {
            self.message_keys.insert(
                entry.name.clone(),
                super::message_keys::MessageKeys::new(entry.created),
            );
        }
        // A durable engine keeps the table's rows and its reader's
        // positions; after a restart the reader goes on from there.
        let durable = self.store.is_some() && eddy_connectors::source::resumable(spec);
        let resume = if durable && self.replaying {
            Some(self.resume_connector_table(entry)?)
        } else {
            None
        };
        let scan = SourceScan {
            source: entry.name.clone(),
            nodes: vec![node],
            spec: spec.clone(),
            schema: entry.schema.clone(),
            stored: durable.then_some(Stored::Table {
                id: entry.created,
                log: !eddy_connectors::source::keyed(spec),
            }),
            resume,
        };
        self.start_reader(&entry.name, scan)
    }

    /// Open the connector of `scan` and start its reader for `view`.
    pub(super) fn start_reader(&mut self, view: &str, scan: SourceScan) -> Result<()> {
        let progress = Arc::new(SourceProgress::new(&scan.source, view));
        let errors = self
            .working
            .source_errors
            .entry(scan.source.clone())
            .or_default()
            .clone();
        let mut resume = scan.resume;
        if resume.is_none() && !self.replaying {
            // Where `latest` is is fixed now: the view reads what comes
            // after its CREATE, and a checkpoint can store it at once.
            let resolved = self
                .start_at
                .iter()
                .position(|(spec, _)| *spec == *scan.spec);
            let resolved = match resolved {
                Some(at) => self.start_at.swap_remove(at).1,
                None => eddy_connectors::source::start_positions(&scan.spec)
                    .map_err(|error| error.to_string()),
            };
            match resolved {
                Ok(Some(positions)) => {
                    self.unsynced |= scan.stored.is_some();
                    resume = Some(eddy_connectors::source::Resume { positions });
                }
                Ok(None) => {}
                Err(error) => {
                    warn!(source = %scan.source, %error, "start offsets not found now; the reader looks them up when it starts");
                }
            }
        }
        let positions = resume.as_ref().map(|r| r.positions.clone());
        let reader = eddy_connectors::source::open(
            &scan.spec,
            &scan.schema,
            progress.clone(),
            errors,
            resume,
        )
        .map_err(crate::connector_error)?;
        self.working.progress.push(progress.clone());
        let mut reader = Reader::spawn(
            self.wake.clone(),
            view,
            &scan.source,
            scan.nodes,
            reader,
            progress,
        )?;
        reader.stored = scan.stored;
        reader.positions = positions.unwrap_or_default();
        self.readers.push(reader);
        Ok(())
    }

    /// Start sink `sink` on a stored relation: observe the relation's node
    /// (a table's is not observed otherwise) and queue its rows.
    pub(super) fn start_from_relation(&mut self, sink: &str, relation: &str) -> Result<()> {
        let node = *self
            .nodes
            .get(relation)
            .ok_or_else(|| Error::internal(format!("{relation} has no dataflow node")))?;
        self.dataflow.observe(node)?;
        let contents = self.contents_of(relation)?;
        if let Some(runner) = self.sinks.iter_mut().find(|s| s.name == sink) {
            runner.pending.extend(contents);
        }
        Ok(())
    }

    /// Build the operators of a materialized view or of a sink `AS query`
    /// and fill them from their inputs: a view's rows go to its contents, a
    /// sink's to the sink (which must be running already). Filling touches
    /// only the new nodes (no other node has pending input), so older views
    /// are unaffected; on failure the caller uninstalls what was built.
    pub(crate) fn install_plan(&mut self, entry: &CatalogEntry) -> Result<()> {
        let plan = entry
            .plan
            .as_ref()
            .ok_or_else(|| Error::internal("materialized view without a plan"))?;
        let nodes = &self.nodes;
        let planned = eddy_planner::plan_view(&mut self.dataflow, &entry.name, plan, &|name| {
            nodes.get(name).copied()
        });
        let planned = planned?;
        // Scans of sources get a reader of this view's own; scans of tables
        // and views are filled from their contents.
        let mut source_scans: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
        for (relation, node) in &planned.scans {
            let input = self.working.objects.get(relation);
            if let Some(error) = input.and_then(|e| e.failed()) {
                return Err(error);
            }
            if input.is_some_and(|e| e.kind == ObjectKind::Source) {
                source_scans
                    .entry(relation.clone())
                    .or_default()
                    .push(*node);
            } else if !self.nodes.contains_key(relation) {
                return Err(Error::not_supported(format!(
                    "materialized views cannot read \"{relation}\": only tables, sources and materialized views are maintained"
                )));
            }
        }
        self.dataflow.observe(planned.root)?;
        self.nodes.insert(entry.name.clone(), planned.root);
        if entry.kind == ObjectKind::MaterializedView {
            self.roots.insert(planned.root, entry.name.clone());
            // Contents are stored by the plan's key where it has one, so
            // that a lookup by key of a view on disk seeks.
            let key = entry
                .plan
                .as_deref()
                .and_then(|plan| eddy_planner::storage_key(plan, &|name| self.relation_key(name)))
                .unwrap_or_default();
            self.working.relations.insert(
                entry.name.clone(),
                Relation::keyed(entry.schema.clone(), &key)?,
            );
        }
        let stores_state = self.stores_state(entry, planned.scans.iter().map(|(r, _)| r));
        if stores_state {
            self.install_state(entry, planned.root)?;
        } else if !source_scans.is_empty()
            && self
                .sinks
                .iter()
                .any(|s| s.name == entry.name && s.outbox.is_some())
        {
            // Its readers would start over after a restart and send again.
            return Err(Error::not_supported(format!(
                "an exactly-once sink over this query (an operator of it cannot store its state); set exactly_once = 'false' for sink \"{}\"",
                entry.name
            )));
        }
        for (relation, node) in &planned.scans {
            if source_scans.contains_key(relation) || (stores_state && self.replaying) {
                // A restored view's operators hold their inputs already.
                continue;
            }
            for changes in self.contents_of(relation)? {
                self.dataflow.push(*node, changes)?;
            }
        }
        let scans = self.restore_scans(entry, source_scans, stores_state)?;
        let output = self.dataflow.step()?;
        self.integrate(output)?;
        for scan in scans {
            self.start_reader(&entry.name, scan)?;
        }
        Ok(())
    }

    /// The current rows of table or materialized view `relation`, as
    /// insertions.
    fn contents_of(&self, relation: &str) -> Result<Vec<eddy_common::ChangeBatch>> {
        self.working
            .relations
            .get(relation)
            .ok_or_else(|| Error::internal(format!("relation {relation} has no contents")))?
            .contents()
    }
}
