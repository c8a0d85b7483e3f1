"""esl-assets: dictionary entries to audio and images."""
