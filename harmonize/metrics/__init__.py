"""Metrics: SSIM (equal to scikit-image's), intensity histograms and ROC / AUC with DeLong CIs."""
