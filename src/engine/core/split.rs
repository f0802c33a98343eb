//! Changing what a batch runs: editing its selector and vars, and splitting it
//! into one batch per model.

use std::collections::HashSet;

use super::EngineCore;
use super::batch::BatchState;
use crate::dbt::argv::ListedModel;
use crate::dbt::events::Level;
use crate::dbt::run_results::MergedResults;
use crate::engine::messages::{BatchStatus, Event};
use crate::engine::protocol::Effect;
use crate::plan::{self, Batch};

impl EngineCore {
    pub(super) fn edit_batch(
        &mut self,
        b: usize,
        select: Option<String>,
        vars: &str,
        now: f64,
    ) -> Vec<Effect> {
        if !self.batches[b].editable() {
            return vec![Self::notice(
                Level::Warn,
                "only a pending, failed or cancelled batch can be edited",
            )];
        }
        let vars = match plan::parse_vars(vars) {
            Ok(v) => v,
            Err(e) => return vec![Self::notice(Level::Error, e.0)],
        };
        let st = &mut self.batches[b];
        st.batch.select = select.filter(|s| !s.trim().is_empty());
        st.batch.vars = vars;
        st.batch.label = plan::label_for(st.batch.window.as_ref(), st.batch.select.as_deref());
        // Results of the old selection say nothing about the new one.
        st.results = MergedResults::default();
        st.listed = None;
        st.force_full = true;
        st.nothing_selected = false;
        let mut fx = if st.status == BatchStatus::Pending {
            vec![self.batch_changed(b, now)]
        } else {
            self.requeue(b, now)
        };
        fx.push(Effect::WriteSummary);
        fx
    }

    pub(super) fn request_split(&mut self, b: usize) -> Vec<Effect> {
        let st = &mut self.batches[b];
        if !st.editable() || st.splitting {
            return vec![Self::notice(
                Level::Warn,
                "only a pending, failed or cancelled batch can be split",
            )];
        }
        st.splitting = true;
        vec![
            Effect::ListModels { batch: b },
            Self::notice(
                Level::Info,
                format!("listing the models of {} (dbt ls)", st.batch.label),
            ),
        ]
    }

    /// The answer to `Effect::ListModels`: replace the batch by one batch per model,
    /// queued where it stood.
    pub fn on_listed(
        &mut self,
        b: usize,
        models: Result<Vec<ListedModel>, String>,
        now: f64,
    ) -> Vec<Effect> {
        self.batches[b].splitting = false;
        let label = self.batches[b].batch.label.clone();
        let models = match models {
            Err(e) => return vec![Self::notice(Level::Error, format!("dbt ls failed: {e}"))],
            Ok(m) if m.len() < 2 => {
                return vec![Self::notice(
                    Level::Warn,
                    format!("{label} has {} model(s): nothing to split", m.len()),
                )];
            }
            Ok(_) if !self.batches[b].editable() => {
                return vec![Self::notice(
                    Level::Warn,
                    "the batch started meanwhile; not split",
                )];
            }
            Ok(m) => m,
        };
        let parent = self.batches[b].batch.clone();
        let at = self.queue.iter().position(|&q| q == b);
        self.queue.retain(|&q| q != b);
        let first = self.batches.len();
        let mut taken: HashSet<String> = self.batches.iter().map(|s| s.batch.id.clone()).collect();
        for model in &models {
            let base = format!("{}-{}", parent.id, plan::slug(&model.name));
            let mut id = base.clone();
            let mut n = 2;
            while taken.contains(&id) {
                id = format!("{base}-{n}");
                n += 1;
            }
            taken.insert(id.clone());
            let batch = Batch {
                id,
                label: plan::label_for(parent.window.as_ref(), Some(&model.name)),
                select: Some(model.name.clone()),
                // Each part keeps the parent's lock on the relation it builds.
                locks: parent
                    .locks
                    .iter()
                    .filter(|l| model.relation.as_ref() == Some(*l))
                    .cloned()
                    .collect(),
                window: parent.window,
                vars: parent.vars.clone(),
                after: parent.after.clone(),
                // A test of two models (relationships) runs with the part that has
                // both, not with the first of them, before the other is built.
                indirect_selection: Some("buildable".into()),
                ..Batch::default()
            };
            let mut part = BatchState::new(batch, self.cfg.retries);
            part.after.clone_from(&self.batches[b].after);
            // A model that committed in the parent's attempts is not built again
            // by its part (the part's attempts are numbered afresh: it counts
            // from attempt 0, the parent's).
            let parent_state = &self.batches[b];
            if parent_state.committed().contains(&model.unique_id)
                && let Some(o) = parent_state.results.nodes.get(&model.unique_id)
            {
                part.results
                    .record(&model.unique_id, &o.status, 0, o.execution_time);
                part.committed_since = 0;
                part.tests_left = true;
            }
            self.batches.push(part);
        }
        let new: Vec<usize> = (first..self.batches.len()).collect();
        // dbt's order among the parts: a part runs after the parts it reads.
        let part_of: std::collections::HashMap<&str, usize> = models
            .iter()
            .zip(&new)
            .map(|(m, &i)| (m.unique_id.as_str(), i))
            .collect();
        let reads: Vec<Vec<usize>> = models
            .iter()
            .map(|m| {
                m.parents
                    .iter()
                    .filter_map(|p| part_of.get(p.as_str()).copied())
                    .collect()
            })
            .collect();
        for (&i, parts) in new.iter().zip(reads) {
            for p in parts {
                if !self.batches[i].after.contains(&p) {
                    self.batches[i].after.push(p);
                }
                let id = self.batches[p].batch.id.clone();
                self.batches[i].batch.after.push(id);
            }
        }
        // Whoever waited on the batch now waits on all its parts.
        for st in &mut self.batches[..first] {
            if st.after.contains(&b) {
                st.after.retain(|&a| a != b);
                st.after.extend(new.iter().copied());
            }
        }
        match at {
            Some(pos) => {
                for (k, &i) in new.iter().enumerate() {
                    self.queue.insert(pos + k, i);
                }
            }
            None => self.queue.extend(new.iter().copied()),
        }
        self.wake();
        let mut fx = self.set_status(b, BatchStatus::Split, now);
        fx.push(Effect::Emit(Event::BatchesAdded(
            new.iter().map(|&i| self.view(i, now)).collect(),
        )));
        fx.push(self.queue_changed());
        fx.push(Self::notice(
            Level::Info,
            format!("{label} split into {} batches, one per model", models.len()),
        ));
        fx.extend(self.dispatch(now));
        fx
    }
}
