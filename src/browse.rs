//! Browsing a run's Grad-CAMs image by image: the engine behind the TUI's
//! Grad-CAM screen and `flowercam view`. It reopens a run folder (its
//! `config.toml`, `summary.json` and checkpoints), decodes the test split
//! once, and answers "show me sample k of class c, filtered and explained
//! this way" with the image and one overlay per trained model. It knows
//! nothing about terminals, so it is tested like the rest of the engine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use image::RgbImage;

use crate::cam::{self, Method, colormap::Colormap, focus};
use crate::config::Config;
use crate::data::{self, augment::Augmenter, cache::CachedImage};
use crate::model::{ResNet, Stage};
use crate::report::Summary;
use crate::train::Phase;
use crate::workflow::{display_crop, display_mask};

/// Which of a class's test images to step through (`m` in the TUI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SampleFilter {
    #[default]
    All,
    /// Classified correctly by the reference model (FT when it exists, else FE).
    Correct,
    /// Misclassified by the reference model.
    Misclassified,
}

impl SampleFilter {
    pub fn next(self) -> SampleFilter {
        match self {
            SampleFilter::All => SampleFilter::Correct,
            SampleFilter::Correct => SampleFilter::Misclassified,
            SampleFilter::Misclassified => SampleFilter::All,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SampleFilter::All => "all",
            SampleFilter::Correct => "correct",
            SampleFilter::Misclassified => "misclassified",
        }
    }
}

/// Which class a CAM explains (`t` in the TUI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CamTarget {
    #[default]
    TrueLabel,
    /// Each model's own top prediction.
    Predicted,
}

impl CamTarget {
    pub fn toggle(self) -> CamTarget {
        match self {
            CamTarget::TrueLabel => CamTarget::Predicted,
            CamTarget::Predicted => CamTarget::TrueLabel,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            CamTarget::TrueLabel => "true class",
            CamTarget::Predicted => "predicted class",
        }
    }
}

/// What the person asked to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Query {
    pub class: usize,
    pub filter: SampleFilter,
    /// Position within the class's filtered images; wraps around.
    pub index: usize,
    pub target: CamTarget,
    pub method: Method,
}

/// One model's view of a sample.
#[derive(Debug, Clone)]
pub struct ModelView {
    /// "FE" or "FT".
    pub name: &'static str,
    pub overlay: RgbImage,
    pub predicted: usize,
    pub confidence: f32,
    /// The class the CAM explains.
    pub target: usize,
    /// Share of CAM energy on the flower, when the image has a mask.
    pub focus: Option<f64>,
}

/// The answer to a [`Query`].
#[derive(Debug, Clone)]
pub struct SampleView {
    pub query: Query,
    /// How many images of the class pass the filter (0: nothing to show).
    pub count: usize,
    /// Index into the test split.
    pub test_index: Option<usize>,
    pub image: Option<RgbImage>,
    pub models: Vec<ModelView>,
}

struct LoadedModel {
    name: &'static str,
    model: ResNet,
    /// Per test image: predicted class and its probability.
    predictions: Vec<(usize, f32)>,
}

/// An opened run, ready to answer queries.
pub struct Browser {
    config: Config,
    device: Device,
    pub classes: Vec<String>,
    test: Vec<CachedImage>,
    models: Vec<LoadedModel>,
    cmap: Colormap,
    layer: Stage,
    cache: HashMap<(usize, Query), SampleView>,
}

/// Read a run folder's `summary.json`.
pub fn read_summary(run_dir: &Path) -> Result<Summary, String> {
    let path = run_dir.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a flowercam summary: {e}", path.display()))
}

/// Read a run folder's `config.toml` (the resolved configuration it ran with).
pub fn read_config(run_dir: &Path) -> Result<Config, String> {
    let path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (is {} a flowercam run folder?)",
            path.display(),
            run_dir.display()
        )
    })?;
    Config::from_layers(&[(path.display().to_string(), text)]).map_err(|e| e.to_string())
}

impl Browser {
    /// Open `run_dir` with its own configuration: decode the test split
    /// (`progress(done, total)`) and load whichever checkpoints exist.
    pub fn open(
        run_dir: &Path,
        config: &Config,
        device: &Device,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Browser, String> {
        let ds = data::load(config).map_err(|e| e.to_string())?;
        let total = ds.test.len();
        let (test, _) = data::cache::decode_samples(&ds.test, config.image.resize, &|d| progress(d, total));
        let classes: Vec<String> = ds.classes.iter().map(|c| c.name.clone()).collect();
        let mut browser = Browser {
            config: config.clone(),
            device: device.clone(),
            classes,
            test,
            models: Vec::new(),
            cmap: Colormap::by_name(&config.cam.colormap),
            layer: Stage::from_name(&config.cam.layer).unwrap_or(Stage::Layer4),
            cache: HashMap::new(),
        };
        browser.reload(run_dir)?;
        Ok(browser)
    }

    /// Load (again) the checkpoints the run has written so far.
    pub fn reload(&mut self, run_dir: &Path) -> Result<(), String> {
        let summary = read_summary(run_dir).unwrap_or_default();
        self.models.clear();
        self.cache.clear();
        for (name, phase, file) in [
            ("FE", Phase::FeatureExtraction, "fe.safetensors"),
            ("FT", Phase::FineTuning, "ft.safetensors"),
        ] {
            let path: PathBuf = run_dir.join(file);
            if !path.exists() {
                continue;
            }
            let (model, _) = crate::model::weights::load(&path, crate::model::Arch::ResNet18, &self.device)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let predictions = match summary.samples.predictions.get(phase.key()) {
                Some(p) if p.len() == self.test.len() => p.clone(),
                _ => self.classify(&model)?,
            };
            self.models.push(LoadedModel {
                name,
                model,
                predictions,
            });
        }
        Ok(())
    }

    /// Names of the loaded models ("FE", "FT").
    pub fn model_names(&self) -> Vec<&'static str> {
        self.models.iter().map(|m| m.name).collect()
    }

    /// The test split as decoded (for thumbnails).
    pub fn test_images(&self) -> &[CachedImage] {
        &self.test
    }

    fn classify(&self, model: &ResNet) -> Result<Vec<(usize, f32)>, String> {
        let aug = Augmenter::new(&self.config.image, &self.config.augment);
        let mut out = Vec::with_capacity(self.test.len());
        let refs: Vec<&CachedImage> = self.test.iter().collect();
        for chunk in refs.chunks(32) {
            let x = aug
                .batch(chunk, false, 0, 0, 0, &self.device)
                .map_err(|e| e.to_string())?;
            let probs = candle_nn::ops::softmax_last_dim(&model.forward(&x).map_err(|e| e.to_string())?)
                .and_then(|p| p.to_vec2::<f32>())
                .map_err(|e| e.to_string())?;
            for p in probs {
                let c = crate::train::metrics::argmax_rows(std::slice::from_ref(&p))[0];
                out.push((c, p[c]));
            }
        }
        Ok(out)
    }

    /// Test indices of `class` that pass `filter` (judged by the last model loaded).
    pub fn members(&self, class: usize, filter: SampleFilter) -> Vec<usize> {
        let reference = self.models.last();
        (0..self.test.len())
            .filter(|&i| self.test[i].label == class)
            .filter(|&i| match (filter, reference) {
                (SampleFilter::All, _) | (_, None) => true,
                (SampleFilter::Correct, Some(m)) => m.predictions[i].0 == class,
                (SampleFilter::Misclassified, Some(m)) => m.predictions[i].0 != class,
            })
            .collect()
    }

    /// The first test image of each class, centre-cropped, for thumbnails.
    pub fn thumbnails(&self, size: u32) -> Vec<(usize, RgbImage)> {
        (0..self.classes.len())
            .filter_map(|c| {
                let img = self.test.iter().find(|im| im.label == c)?;
                Some((
                    c,
                    data::cache::resize_rgb(&display_crop(img, self.config.image.size), None, size, size),
                ))
            })
            .collect()
    }

    /// Answer a query: the image and each model's overlay, prediction and focus.
    pub fn show(&mut self, query: Query) -> Result<SampleView, String> {
        let members = self.members(query.class, query.filter);
        let mut query = query;
        if members.is_empty() {
            return Ok(SampleView {
                query,
                count: 0,
                test_index: None,
                image: None,
                models: Vec::new(),
            });
        }
        query.index %= members.len();
        let idx = members[query.index];
        if let Some(v) = self.cache.get(&(idx, query)) {
            return Ok(v.clone());
        }
        let img = &self.test[idx];
        let size = self.config.image.size;
        let crop = display_crop(img, size);
        let mask = display_mask(img, size);
        let aug = Augmenter::new(&self.config.image, &self.config.augment);
        let x = aug
            .batch(&[img], false, 0, 0, 0, &self.device)
            .map_err(|e| e.to_string())?;
        let mut models = Vec::new();
        for m in &self.models {
            let (predicted, confidence) = m.predictions[idx];
            let target = match query.target {
                CamTarget::TrueLabel => img.label,
                CamTarget::Predicted => predicted,
            };
            let raw = cam::compute(&m.model, &x, self.layer, &[target], query.method).map_err(|e| e.to_string())?;
            let mut map = cam::upsample(&raw.maps[0], raw.height, raw.width, size as usize, size as usize);
            cam::normalise_by_max(&mut map);
            models.push(ModelView {
                name: m.name,
                overlay: cam::colormap::overlay(&crop, &map, &self.cmap),
                predicted,
                confidence,
                target,
                focus: mask.as_ref().map(|mk| focus::focus(&map, mk).energy),
            });
        }
        let view = SampleView {
            query,
            count: members.len(),
            test_index: Some(idx),
            image: Some(crop),
            models,
        };
        if self.cache.len() > 256 {
            self.cache.clear();
        }
        self.cache.insert((idx, query), view.clone());
        Ok(view)
    }
}
