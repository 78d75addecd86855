//! Which jobs of the computed pipeline run, what each waits for, and, as jobs end, what GitLab
//! would do next: start, skip, or leave a manual job waiting. Pure: the orchestration feeds
//! endings in and asks for the next decisions.

use std::collections::{BTreeMap, BTreeSet};

use berth_pipeline::model::{Job, Pipeline, When};

/// What the user asked to run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Job names (a `parallel` job's base name selects every instance). Empty: all.
    pub jobs: Vec<String>,
    /// Also run what the named jobs need, transitively.
    pub with_needs: bool,
    /// Only the jobs of this stage (with `with_needs`, plus what they need).
    pub stage: Option<String>,
    /// Run manual jobs instead of leaving them waiting.
    pub manual: bool,
}

/// A selection that names something the pipeline does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// No job has this name.
    #[error("the pipeline has no job {name:?} (see `berth exec --list`)")]
    UnknownJob {
        /// The name asked for.
        name: String,
    },
    /// No stage has this name.
    #[error("the pipeline has no stage {name:?}; its stages are: {stages}")]
    UnknownStage {
        /// The name asked for.
        name: String,
        /// The pipeline's stages.
        stages: String,
    },
}

/// How a planned job ended (or why it never started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The job passed.
    Success,
    /// The job failed; `allowed` when `allow_failure` lets the pipeline go on.
    Failed {
        /// Whether the failure is allowed.
        allowed: bool,
        /// The script's exit code, when a script failed.
        exit_code: Option<i32>,
        /// GitLab's failure reason (`script_failure`, `runner_system_failure`, ...).
        reason: String,
    },
    /// GitLab would skip it: its `when` does not match what happened before.
    Skipped {
        /// Why.
        reason: String,
    },
    /// A manual job nobody started (`--manual` starts them).
    Manual,
    /// The run was interrupted before or while it ran.
    Canceled,
}

impl Ending {
    /// Whether this ending makes the pipeline fail.
    #[must_use]
    pub const fn fails_pipeline(&self) -> bool {
        matches!(self, Self::Failed { allowed: false, .. })
    }

    /// The status word GitLab shows.
    #[must_use]
    pub fn status(&self) -> &'static str {
        match self {
            Self::Success => "passed",
            Self::Failed { allowed: true, .. } => "warning",
            Self::Failed { allowed: false, .. } => "failed",
            Self::Skipped { .. } => "skipped",
            Self::Manual => "manual",
            Self::Canceled => "canceled",
        }
    }
}

/// One job to run, with the indices (into [`Plan::jobs`]) of the jobs it waits for.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The computed job.
    pub job: Job,
    /// Jobs that must end before this one is decided.
    pub waits_for: Vec<usize>,
    /// Whether the job waits by `needs:` (only those) rather than by stage order.
    pub by_needs: bool,
    /// Whether the user named it (a named manual job runs).
    pub named: bool,
}

/// What to do with a job whose prerequisites have all ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start it.
    Run,
    /// It ends without running.
    End(Ending),
}

/// The jobs that run, in pipeline order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The planned jobs.
    pub jobs: Vec<Planned>,
    /// Whether manual jobs run.
    manual: bool,
}

impl Plan {
    /// Plans `selection` of `pipeline`.
    ///
    /// # Errors
    /// The selection names a job or stage the pipeline does not have.
    pub fn new(pipeline: &Pipeline, selection: &Selection) -> Result<Self, SelectionError> {
        let mut chosen: BTreeSet<usize> = BTreeSet::new();
        let mut named: BTreeSet<usize> = BTreeSet::new();
        for name in &selection.jobs {
            let matches: Vec<usize> = pipeline
                .jobs
                .iter()
                .enumerate()
                .filter(|(_, job)| job.name == *name || job.base_name == *name)
                .map(|(i, _)| i)
                .collect();
            if matches.is_empty() {
                return Err(SelectionError::UnknownJob { name: name.clone() });
            }
            named.extend(matches.iter().copied());
            chosen.extend(matches);
        }
        if let Some(stage) = &selection.stage {
            if !pipeline.stages.contains(stage) {
                return Err(SelectionError::UnknownStage {
                    name: stage.clone(),
                    stages: pipeline.stages.join(", "),
                });
            }
            chosen.extend(
                pipeline
                    .jobs
                    .iter()
                    .enumerate()
                    .filter(|(_, job)| job.stage == *stage)
                    .map(|(i, _)| i),
            );
        }
        let whole = selection.jobs.is_empty() && selection.stage.is_none();
        if whole {
            chosen.extend(0..pipeline.jobs.len());
        } else if selection.with_needs {
            let by_name: BTreeMap<&str, usize> = pipeline
                .jobs
                .iter()
                .enumerate()
                .map(|(i, job)| (job.name.as_str(), i))
                .collect();
            let mut todo: Vec<usize> = chosen.iter().copied().collect();
            while let Some(i) = todo.pop() {
                for need in pipeline.jobs[i].needs.iter().flatten() {
                    if let Some(&j) = by_name.get(need.job.as_str())
                        && chosen.insert(j)
                    {
                        todo.push(j);
                    }
                }
            }
        }
        chosen.retain(|&i| pipeline.jobs[i].when != When::Never);
        let order: Vec<usize> = chosen.into_iter().collect();
        let position: BTreeMap<usize, usize> =
            order.iter().enumerate().map(|(p, &i)| (i, p)).collect();
        let by_name: BTreeMap<&str, usize> = order
            .iter()
            .map(|&i| (pipeline.jobs[i].name.as_str(), position[&i]))
            .collect();
        let jobs = order
            .iter()
            .map(|&i| {
                let job = &pipeline.jobs[i];
                let (waits_for, by_needs) = match &job.needs {
                    Some(needs) => (
                        needs
                            .iter()
                            .filter_map(|need| by_name.get(need.job.as_str()).copied())
                            .collect(),
                        true,
                    ),
                    None => (
                        order
                            .iter()
                            .filter(|&&j| pipeline.jobs[j].stage_index < job.stage_index)
                            .map(|j| position[j])
                            .collect(),
                        false,
                    ),
                };
                Planned {
                    job: job.clone(),
                    waits_for,
                    by_needs,
                    named: named.contains(&i),
                }
            })
            .collect();
        Ok(Self {
            jobs,
            manual: selection.manual,
        })
    }

    /// What GitLab does with job `index` once every job it waits for has ended
    /// (`endings[j]` is the ending of job `j`, `None` while it has not ended). `None`: not yet.
    #[must_use]
    pub fn decide(&self, index: usize, endings: &[Option<Ending>]) -> Option<Decision> {
        let planned = &self.jobs[index];
        let before: Vec<(usize, &Ending)> = planned
            .waits_for
            .iter()
            .map(|&j| endings.get(j).and_then(Option::as_ref).map(|e| (j, e)))
            .collect::<Option<_>>()?;
        let name_of = |j: usize| self.jobs[j].job.name.clone();
        if let Some((j, _)) = before.iter().find(|(_, e)| **e == Ending::Canceled) {
            return Some(Decision::End(Ending::Skipped {
                reason: format!("{} was canceled", name_of(*j)),
            }));
        }
        if let Some((j, _)) = before
            .iter()
            .find(|(j, e)| **e == Ending::Manual && !self.jobs[*j].job.allow_failure.allows(None))
        {
            return Some(Decision::End(Ending::Skipped {
                reason: format!(
                    "blocked: the manual job {} is not allowed to fail and was not started (--manual starts it)",
                    name_of(*j)
                ),
            }));
        }
        let failed = before
            .iter()
            .find(|(_, e)| e.fails_pipeline())
            .map(|(j, _)| *j);
        let skipped_need = planned.by_needs.then(|| {
            before
                .iter()
                .find(|(_, e)| matches!(e, Ending::Skipped { .. }))
                .map(|(j, _)| *j)
        });
        let job = &planned.job;
        let skip = |reason: String| Some(Decision::End(Ending::Skipped { reason }));
        match job.when {
            When::Always => Some(Decision::Run),
            When::OnFailure => match failed {
                Some(_) => Some(Decision::Run),
                None => skip("when: on_failure, and nothing before it failed".to_owned()),
            },
            When::Never => skip("when: never".to_owned()),
            When::OnSuccess | When::Delayed | When::Manual => {
                if let Some(j) = failed {
                    return skip(format!("{} failed", name_of(j)));
                }
                if let Some(Some(j)) = skipped_need {
                    return skip(format!("it needs {}, which was skipped", name_of(j)));
                }
                if job.when == When::Manual && !self.manual && !planned.named {
                    return Some(Decision::End(Ending::Manual));
                }
                Some(Decision::Run)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_pipeline::model::{AllowFailure, Need, Retry};

    use super::*;

    fn job(name: &str, stage: usize, when: When, needs: Option<&[&str]>) -> Job {
        Job {
            name: name.to_owned(),
            base_name: name.split(' ').next().unwrap_or(name).to_owned(),
            stage: ["build", "test", "deploy"][stage].to_owned(),
            stage_index: stage,
            when,
            start_in: None,
            allow_failure: AllowFailure::Bool(when == When::Manual),
            needs: needs.map(|n| {
                n.iter()
                    .map(|j| Need {
                        job: (*j).to_owned(),
                        artifacts: true,
                        optional: false,
                    })
                    .collect()
            }),
            dependencies: None,
            image: None,
            services: Vec::new(),
            before_script: Vec::new(),
            script: vec!["true".to_owned()],
            after_script: Vec::new(),
            variables: Vec::new(),
            artifacts: None,
            cache: Vec::new(),
            timeout: None,
            retry: Retry {
                max: 0,
                when: Vec::new(),
                exit_codes: Vec::new(),
            },
            interruptible: false,
            node: None,
            tags: Vec::new(),
            environment: None,
            coverage: None,
            description: None,
        }
    }

    fn pipeline(jobs: Vec<Job>) -> Pipeline {
        Pipeline {
            stages: vec!["build".into(), "test".into(), "deploy".into()],
            jobs,
            name: None,
        }
    }

    fn failed() -> Ending {
        Ending::Failed {
            allowed: false,
            exit_code: Some(1),
            reason: "script_failure".to_owned(),
        }
    }

    fn sample() -> Pipeline {
        pipeline(vec![
            job("compile", 0, When::OnSuccess, None),
            job("lint", 0, When::OnSuccess, Some(&[])),
            job("unit 1/2", 1, When::OnSuccess, None),
            job("unit 2/2", 1, When::OnSuccess, None),
            job("report", 1, When::OnFailure, None),
            job("ship", 2, When::Manual, Some(&["compile"])),
            job("notify", 2, When::Always, None),
        ])
    }

    #[test]
    fn stage_jobs_wait_for_every_earlier_stage_and_needs_only_for_their_needs() {
        let plan = Plan::new(&sample(), &Selection::default()).expect("plan");
        let waits: Vec<(&str, Vec<usize>)> = plan
            .jobs
            .iter()
            .map(|p| (p.job.name.as_str(), p.waits_for.clone()))
            .collect();
        assert_eq!(
            waits,
            vec![
                ("compile", vec![]),
                ("lint", vec![]),
                ("unit 1/2", vec![0, 1]),
                ("unit 2/2", vec![0, 1]),
                ("report", vec![0, 1]),
                ("ship", vec![0]),
                ("notify", vec![0, 1, 2, 3, 4]),
            ]
        );
    }

    #[test]
    fn a_failure_skips_on_success_runs_on_failure_and_always() {
        let plan = Plan::new(&sample(), &Selection::default()).expect("plan");
        let mut endings = vec![None; plan.jobs.len()];
        assert_eq!(plan.decide(2, &endings), None, "compile has not ended");
        endings[0] = Some(failed());
        endings[1] = Some(Ending::Success);
        assert!(matches!(
            plan.decide(2, &endings),
            Some(Decision::End(Ending::Skipped { .. }))
        ));
        assert_eq!(plan.decide(4, &endings), Some(Decision::Run));
        assert!(matches!(
            plan.decide(5, &endings),
            Some(Decision::End(Ending::Skipped { .. }))
        ));
        endings[2] = Some(Ending::Skipped {
            reason: String::new(),
        });
        endings[3] = Some(Ending::Skipped {
            reason: String::new(),
        });
        endings[4] = Some(Ending::Success);
        assert_eq!(plan.decide(6, &endings), Some(Decision::Run));
    }

    #[test]
    fn an_allowed_failure_lets_the_pipeline_go_on() {
        let plan = Plan::new(&sample(), &Selection::default()).expect("plan");
        let mut endings = vec![None; plan.jobs.len()];
        endings[0] = Some(Ending::Failed {
            allowed: true,
            exit_code: Some(3),
            reason: "script_failure".to_owned(),
        });
        endings[1] = Some(Ending::Success);
        assert_eq!(plan.decide(2, &endings), Some(Decision::Run));
        assert!(matches!(
            plan.decide(4, &endings),
            Some(Decision::End(Ending::Skipped { .. }))
        ));
    }

    #[test]
    fn manual_jobs_wait_unless_asked_for_and_a_blocking_one_stops_what_follows() {
        let plan = Plan::new(&sample(), &Selection::default()).expect("plan");
        let mut endings = vec![Some(Ending::Success); plan.jobs.len()];
        endings[5] = None;
        assert_eq!(
            plan.decide(5, &endings),
            Some(Decision::End(Ending::Manual))
        );
        let manual = Selection {
            manual: true,
            ..Selection::default()
        };
        let plan_manual = Plan::new(&sample(), &manual).expect("plan");
        assert_eq!(plan_manual.decide(5, &endings), Some(Decision::Run));

        let mut blocking = sample();
        blocking.jobs[0].when = When::Manual;
        blocking.jobs[0].allow_failure = AllowFailure::Bool(false);
        let plan = Plan::new(&blocking, &Selection::default()).expect("plan");
        let mut endings = vec![None; plan.jobs.len()];
        endings[0] = Some(Ending::Manual);
        endings[1] = Some(Ending::Success);
        let Some(Decision::End(Ending::Skipped { reason })) = plan.decide(2, &endings) else {
            panic!("a blocking manual job must stop later stages");
        };
        assert!(reason.contains("compile"), "{reason}");
    }

    #[test]
    fn named_jobs_run_alone_or_with_what_they_need() {
        let alone = Selection {
            jobs: vec!["ship".to_owned()],
            ..Selection::default()
        };
        let plan = Plan::new(&sample(), &alone).expect("plan");
        let names: Vec<&str> = plan.jobs.iter().map(|p| p.job.name.as_str()).collect();
        assert_eq!(names, vec!["ship"]);
        assert_eq!(
            plan.decide(0, &[None]),
            Some(Decision::Run),
            "a named manual job runs"
        );
        let with_needs = Selection {
            with_needs: true,
            ..alone
        };
        let plan = Plan::new(&sample(), &with_needs).expect("plan");
        let names: Vec<&str> = plan.jobs.iter().map(|p| p.job.name.as_str()).collect();
        assert_eq!(names, vec!["compile", "ship"]);
        assert_eq!(plan.jobs[1].waits_for, vec![0]);
    }

    #[test]
    fn a_base_name_selects_every_parallel_instance_and_unknown_names_are_refused() {
        let unit = Selection {
            jobs: vec!["unit".to_owned()],
            ..Selection::default()
        };
        let plan = Plan::new(&sample(), &unit).expect("plan");
        assert_eq!(plan.jobs.len(), 2);
        let wrong = Selection {
            jobs: vec!["unti".to_owned()],
            ..Selection::default()
        };
        assert_eq!(
            Plan::new(&sample(), &wrong).err(),
            Some(SelectionError::UnknownJob {
                name: "unti".to_owned()
            })
        );
        let stage = Selection {
            stage: Some("tset".to_owned()),
            ..Selection::default()
        };
        assert!(matches!(
            Plan::new(&sample(), &stage),
            Err(SelectionError::UnknownStage { .. })
        ));
    }

    #[test]
    fn a_job_whose_need_was_skipped_is_skipped() {
        let mut p = sample();
        p.jobs[5].when = When::OnSuccess;
        let plan = Plan::new(&p, &Selection::default()).expect("plan");
        let mut endings = vec![None; plan.jobs.len()];
        endings[0] = Some(Ending::Skipped {
            reason: String::new(),
        });
        assert!(matches!(
            plan.decide(5, &endings),
            Some(Decision::End(Ending::Skipped { .. }))
        ));
    }
}
