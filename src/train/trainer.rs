//! One training phase: a frozen prefix that is computed but never
//! differentiated, trainable stages with their own learning rates, an epoch
//! loop that trains once over the shuffled training set and evaluates on the
//! test set, as the notebook does.
//!
//! Frozen stages in eval mode are a fixed function, so the test set goes
//! through them once per phase and only the trainable part runs each epoch.
//! Training batches are augmented on another thread while this one computes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::Optimizer;
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::events::{Event, Phase};
use super::metrics::{EpochMetrics, Tally, argmax_rows};
use crate::config::BatchNormMode;
use crate::data::augment::Augmenter;
use crate::data::cache::CachedImage;
use crate::model::{BnTrain, ResNet, Stage};

/// A request to stop, honoured between batches.
#[derive(Debug, Clone, Default)]
pub struct StopToken(Arc<AtomicBool>);

impl StopToken {
    pub fn new() -> StopToken {
        StopToken::default()
    }
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How one phase trains.
#[derive(Debug, Clone)]
pub struct PhaseSpec {
    pub phase: Phase,
    pub epochs: usize,
    /// Learning rate per trainable stage.
    pub groups: Vec<(Stage, f64)>,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub batchnorm: BatchNormMode,
    pub seed: u64,
}

/// The images a phase learns from and is measured on.
pub struct PhaseData<'a> {
    pub train: &'a [CachedImage],
    pub test: &'a [CachedImage],
    pub augmenter: &'a Augmenter,
    pub num_classes: usize,
}

/// What a phase produced.
#[derive(Debug, Clone, Default)]
pub struct PhaseOutcome {
    pub epochs: Vec<EpochMetrics>,
    /// The last evaluation's softmax outputs for each test image.
    pub test_probs: Vec<Vec<f32>>,
    pub stopped: bool,
    pub seconds: f64,
}

/// Why a phase could not finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{phase}: loss became {value} at epoch {epoch}, batch {batch}; try a lower learning rate")]
    NonFinite {
        phase: &'static str,
        epoch: usize,
        batch: usize,
        value: f64,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Train `model` as `spec` says. Events go to `emit`; a stop request ends the
/// phase after the current batch with `stopped` set.
pub fn train_phase(
    model: &mut ResNet,
    spec: &PhaseSpec,
    data: &PhaseData,
    device: &Device,
    stop: &StopToken,
    emit: &dyn Fn(Event),
) -> Result<PhaseOutcome, TrainError> {
    let started = Instant::now();
    let stages: Vec<Stage> = spec.groups.iter().map(|(s, _)| *s).collect();
    let first = *stages
        .iter()
        .min()
        .ok_or_else(|| TrainError::Config("no trainable stage".into()))?;
    if first == Stage::Stem {
        return Err(TrainError::Config(
            "the stem cannot be trained (Candle has no max-pool backward for kernel 3 / stride 2)".into(),
        ));
    }
    let groups = model.make_trainable(&stages)?;
    let mut optimizers = Vec::new();
    for (stage, vars) in groups {
        let lr = spec
            .groups
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, lr)| *lr)
            .unwrap_or(1e-3);
        let params = candle_nn::ParamsAdamW {
            lr,
            weight_decay: spec.weight_decay,
            ..Default::default()
        };
        optimizers.push(candle_nn::AdamW::new(vars, params)?);
    }
    let prefix_end = Stage::ALL[first as usize - 1];
    let notebook = spec.batchnorm == BatchNormMode::Notebook;
    let train_bn = if notebook {
        BnTrain::ALL
    } else {
        BnTrain::stages(&stages)
    };
    let batches = data.train.len().div_ceil(spec.batch_size);
    emit(Event::PhaseStarted {
        phase: spec.phase,
        epochs: spec.epochs,
        batches,
        trainable: stages.iter().map(|s| s.name()).collect::<Vec<_>>().join(" + "),
    });

    // The test set through the frozen prefix, once (not in notebook mode,
    // where training moves the frozen stages' running statistics).
    let mut test_cache: Option<Vec<Tensor>> = None;
    let mut outcome = PhaseOutcome::default();
    for epoch in 1..=spec.epochs {
        let t0 = Instant::now();
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(
            spec.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ spec.phase as u64,
        ));
        let mut tally = Tally::new(data.num_classes);
        let mut stopped = false;
        std::thread::scope(|scope| -> Result<(), TrainError> {
            // Augment the next batches while this thread runs the network.
            let (tx, rx) = std::sync::mpsc::sync_channel::<candle_core::Result<(Tensor, Vec<usize>)>>(2);
            let order_ref = &order;
            scope.spawn(move || {
                for (b, idx) in order_ref.chunks(spec.batch_size).enumerate() {
                    let imgs: Vec<&CachedImage> = idx.iter().map(|&i| &data.train[i]).collect();
                    let labels = imgs.iter().map(|im| im.label).collect();
                    let x = data.augmenter.batch(
                        &imgs,
                        true,
                        spec.seed,
                        epoch as u64,
                        (b * spec.batch_size) as u64,
                        device,
                    );
                    if tx.send(x.map(|x| (x, labels))).is_err() {
                        break;
                    }
                }
            });
            for (b, item) in rx.iter().enumerate() {
                let (x, labels) = item?;
                let tb = Instant::now();
                let feats = model.forward_range(
                    &x,
                    Stage::Stem,
                    prefix_end,
                    if notebook { BnTrain::ALL } else { BnTrain::EVAL },
                )?;
                let logits = model.forward_range(&feats, first, Stage::Head, train_bn)?;
                let target = Tensor::from_vec(
                    labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
                    labels.len(),
                    device,
                )?;
                let loss = crate::model::resnet::cross_entropy(&logits, &target)?;
                let loss_value = loss.to_scalar::<f32>()? as f64;
                if !loss_value.is_finite() {
                    return Err(TrainError::NonFinite {
                        phase: spec.phase.key(),
                        epoch,
                        batch: b + 1,
                        value: loss_value,
                    });
                }
                let grads = loss.backward()?;
                for opt in optimizers.iter_mut() {
                    opt.step(&grads)?;
                }
                tally.add(loss_value, &argmax_rows(&logits.to_vec2::<f32>()?), &labels);
                emit(Event::Batch {
                    phase: spec.phase,
                    epoch,
                    batch: b + 1,
                    batches,
                    loss: loss_value,
                    images_per_second: labels.len() as f64 / tb.elapsed().as_secs_f64().max(1e-9),
                });
                if stop.is_stopped() {
                    stopped = true;
                    break;
                }
            }
            Ok(())
        })?;
        if stopped {
            outcome.stopped = true;
            break;
        }
        let train_seconds = t0.elapsed().as_secs_f64();
        if test_cache.is_none() || notebook {
            test_cache = Some(prefix_outputs(model, data, prefix_end, spec.batch_size, device)?);
        }
        let (test, probs) = evaluate_cached(
            model,
            test_cache.as_ref().expect("filled above"),
            data,
            first,
            spec.batch_size,
            device,
        )?;
        outcome.test_probs = probs;
        let metrics = EpochMetrics {
            epoch,
            train_loss: tally.loss(),
            train_acc: tally.accuracy(),
            test_loss: test.loss(),
            test_acc: test.accuracy(),
            seconds: t0.elapsed().as_secs_f64(),
            images_per_second: data.train.len() as f64 / train_seconds.max(1e-9),
            per_class_acc: test.per_class(),
            confusion: test.confusion.clone(),
        };
        emit(Event::EpochDone {
            phase: spec.phase,
            metrics: Box::new(metrics.clone()),
            epochs: spec.epochs,
        });
        outcome.epochs.push(metrics);
        if stop.is_stopped() {
            outcome.stopped = true;
            break;
        }
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// Test images through `Stem..=prefix_end` in eval mode, batch by batch.
pub fn prefix_outputs(
    model: &ResNet,
    data: &PhaseData,
    prefix_end: Stage,
    batch: usize,
    device: &Device,
) -> candle_core::Result<Vec<Tensor>> {
    let mut out = Vec::new();
    for (b, chunk) in data.test.chunks(batch).enumerate() {
        let imgs: Vec<&CachedImage> = chunk.iter().collect();
        let x = data.augmenter.batch(&imgs, false, 0, 0, (b * batch) as u64, device)?;
        out.push(
            model
                .forward_range(&x, Stage::Stem, prefix_end, BnTrain::EVAL)?
                .detach(),
        );
    }
    Ok(out)
}

/// Evaluate from cached prefix outputs: the trainable part in eval mode.
pub fn evaluate_cached(
    model: &ResNet,
    cache: &[Tensor],
    data: &PhaseData,
    first: Stage,
    batch: usize,
    device: &Device,
) -> candle_core::Result<(Tally, Vec<Vec<f32>>)> {
    let mut tally = Tally::new(data.num_classes);
    let mut probs = Vec::new();
    for (feats, chunk) in cache.iter().zip(data.test.chunks(batch)) {
        let logits = model.forward_range(feats, first, Stage::Head, BnTrain::EVAL)?.detach();
        let labels: Vec<usize> = chunk.iter().map(|im| im.label).collect();
        let target = Tensor::from_vec(
            labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
            labels.len(),
            device,
        )?;
        let loss = crate::model::resnet::cross_entropy(&logits, &target)?.to_scalar::<f32>()? as f64;
        tally.add(loss, &argmax_rows(&logits.to_vec2::<f32>()?), &labels);
        probs.extend(candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?);
    }
    Ok((tally, probs))
}
