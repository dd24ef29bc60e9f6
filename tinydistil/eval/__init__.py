"""Evaluation of any model folder or hub id: fine-tuning (finetune), the tasks (glue, imdb, squad), their
metrics, and the held-out masked-LM accuracy of the distilled model itself (mlm_eval). Imports only the method."""
