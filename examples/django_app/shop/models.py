from django.db import models


class Order(models.Model):
    email = models.EmailField()
    receipt_job = models.CharField(max_length=32, blank=True, default="")  # the job that sends its receipt
    receipt = models.TextField(blank=True, default="")                     # written by that job
