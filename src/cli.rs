//! The command line: the contract of DESIGN.md. Flags here override the
//! configuration file, which overrides the built-in defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Fine-tune a pretrained ResNet-18 on a small image dataset, watch it train,
/// and see with Grad-CAM whether it looks at the flowers or at shortcuts.
#[derive(Debug, Parser)]
#[command(name = "flowercam", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: Common,
}

/// Flags every subcommand understands.
#[derive(Debug, Args, Clone, Default)]
pub struct Common {
    /// TOML file overriding the built-in defaults (see config/default.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Dataset folder (Flowers102 layout, or DIR/<class>/*.jpg).
    #[arg(long, global = true, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Pretrained weights: a .pth or .safetensors file, `auto` (torch hub cache, Hugging Face cache, then download) or `none` (random initialisation).
    #[arg(long, global = true, value_name = "FILE|auto|none")]
    pub weights: Option<String>,
    /// Where tensors live: cpu, cuda or cuda:N.
    #[arg(long, global = true, value_name = "DEVICE")]
    pub device: Option<String>,
    /// Threads for decoding, augmentation and CPU math (default: all cores).
    #[arg(long, global = true, env = "RAYON_NUM_THREADS", value_name = "N")]
    pub threads: Option<usize>,
    /// Print lines instead of the full-screen interface (automatic when stdout is not a terminal).
    #[arg(long, global = true)]
    pub headless: bool,
    /// How images are drawn: auto asks the terminal (kitty, sixel, iTerm2 inline
    /// images, also through tmux), halfblocks works everywhere.
    #[arg(
        long,
        global = true,
        value_name = "auto|kitty|sixel|iterm2|halfblocks",
        default_value = "auto"
    )]
    pub graphics: String,
    /// Output folder (runs for `run`/`demo`, the dataset for `synth`).
    #[arg(long, global = true, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Epochs for each training phase.
    #[arg(long, global = true, value_name = "N")]
    pub epochs: Option<usize>,
    /// Seed for shuffling, augmentation, initialisation and synthetic data.
    #[arg(long, global = true, value_name = "N")]
    pub seed: Option<u64>,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The full workflow on Flowers102 (the default): explore, feature extraction,
    /// Grad-CAM, fine-tuning, compare; results in runs/<timestamp>-<name>/.
    Run(RunArgs),
    /// The same workflow on a built-in synthetic dataset with random weights: offline, fast on a CPU.
    Demo(RunArgs),
    /// Print the class table of a dataset (name, label, train, test, masks) and exit.
    Explore,
    /// Write a synthetic dataset in the official Flowers102 layout.
    Synth(SynthArgs),
    /// Download Flowers102 (and its segmentations) with progress and checksums.
    Fetch(FetchArgs),
    /// Classify images with a trained checkpoint or ImageNet weights.
    Predict(PredictArgs),
    /// Measure decode, augmentation, forward and backward throughput on this machine.
    Bench(BenchArgs),
    /// Open a finished (or stopped) run folder in the same screens, without training.
    View(ViewArgs),
}

/// Options of `flowercam predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Image files (JPEG or PNG).
    #[arg(required = true, value_name = "IMAGES")]
    pub images: Vec<PathBuf>,
    /// Print one JSON object per image (image, top, logits) instead of text.
    #[arg(long)]
    pub json: bool,
    /// How many classes to list per image.
    #[arg(long, default_value_t = 5, value_name = "K")]
    pub top: usize,
    /// Also compute a CAM per image: gradcam, gradcam++, hirescam or eigencam.
    #[arg(long, value_name = "METHOD")]
    pub cam: Option<String>,
    /// Stage the CAM explains (layer1..layer4).
    #[arg(long, default_value = "layer4", value_name = "layerK")]
    pub cam_layer: String,
    /// Class the CAM explains: the top prediction, or a class index.
    #[arg(long, default_value = "predicted", value_name = "predicted|INDEX")]
    pub cam_target: String,
    /// Write each image's CAM overlay (PNG) into this folder.
    #[arg(long, value_name = "DIR")]
    pub cam_out: Option<PathBuf>,
}

/// Options of `flowercam bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Time the whole workflow (15 + 15 epochs, Grad-CAM phases included) on a
    /// synthetic dataset with the real split sizes (160 / 412), or on --data.
    #[arg(long)]
    pub workflow: bool,
    /// What to measure: data, model (stock and fast convolutions side by
    /// side), conv (each ResNet-18 convolution on the fast path), cam, tui
    /// (drawing each screen) or all.
    #[arg(long, default_value = "all", value_parser = ["data", "model", "conv", "cam", "tui", "all"])]
    pub what: String,
    /// Batch size for the model measurements.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Input side for the model measurements.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Timed iterations per model measurement.
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Convolution path the model measurements time: both (stock and fast
    /// side by side, in one run), fast or stock.
    #[arg(long, default_value = "both", value_parser = ["both", "fast", "stock"])]
    pub conv: String,
    /// Images for the data measurements.
    #[arg(long, default_value_t = 256)]
    pub images: usize,
}

/// Options of `flowercam view`.
#[derive(Debug, Args)]
pub struct ViewArgs {
    /// A run folder written by `flowercam run` or `demo` (runs/<timestamp>-<name>).
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
}

/// Options of `flowercam run` and `flowercam demo`.
#[derive(Debug, Args, Default, Clone)]
pub struct RunArgs {
    /// Phases to run, comma-separated: explore, fe, gradcam, ft, compare.
    #[arg(long, value_name = "LIST", default_value = "explore,fe,gradcam,ft,compare")]
    pub phases: String,
}

/// Options of `flowercam synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Images per class (split 1/4 train, 1/4 val, 1/2 test). Default: the official split sizes.
    #[arg(long, value_name = "N")]
    pub images_per_class: Option<usize>,
    /// Image width in pixels (heights vary with a random aspect ratio).
    #[arg(long, default_value_t = 320, value_name = "PX")]
    pub size: u32,
    /// Plant a fixed-position mark on this class's images (a shortcut for Grad-CAM to find).
    #[arg(long, value_name = "CLASS")]
    pub shortcut: Option<String>,
    /// Draw every class as the same species, so the shortcut mark is the only
    /// difference between classes (a controlled experiment for Grad-CAM).
    #[arg(long)]
    pub same_species: bool,
}

/// Options of `flowercam fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Skip the segmentation masks (102segmentations.tgz, ~190 MB), which the focus score needs.
    #[arg(long)]
    pub no_segmentations: bool,
    /// Base URL to download from (a mirror of the VGG Flowers102 folder).
    #[arg(long, value_name = "URL", default_value = crate::data::fetch::FLOWERS_BASE_URL)]
    pub mirror: String,
}
