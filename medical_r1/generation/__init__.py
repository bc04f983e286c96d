"""Running a trained model: loading it with its adapter, teacher-forced loss, batched decoding."""
