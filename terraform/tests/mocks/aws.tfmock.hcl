# Values the mocked AWS provider returns for computed attributes, shared by every test file
# (`mock_provider "aws" { source = "./tests/mocks" }`). Real-looking ARNs, so the tests can check
# that each IAM statement names exactly the resource it should.

mock_data "aws_caller_identity" {
  defaults = {
    account_id = "123456789012"
  }
}

mock_data "aws_partition" {
  defaults = {
    partition  = "aws"
    dns_suffix = "amazonaws.com"
  }
}

mock_data "aws_region" {
  defaults = {
    name = "eu-west-1"
  }
}

mock_resource "aws_s3_bucket" {
  defaults = {
    id  = "events-backup-20261125"
    arn = "arn:aws:s3:::events-backup-20261125"
  }
}

mock_resource "aws_lambda_function" {
  defaults = {
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:events-transform"
  }
}

mock_resource "aws_lambda_alias" {
  defaults = {
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:events-transform:live"
  }
}

mock_resource "aws_kinesis_firehose_delivery_stream" {
  defaults = {
    arn = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/events"
  }
}

mock_resource "aws_iam_role" {
  defaults = {
    arn = "arn:aws:iam::123456789012:role/mocked"
  }
}

mock_resource "aws_sns_topic" {
  defaults = {
    arn = "arn:aws:sns:eu-west-1:123456789012:events-alarms"
  }
}

mock_resource "aws_cloudwatch_metric_alarm" {
  defaults = {
    arn = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:mocked"
  }
}

mock_resource "aws_cloudwatch_log_group" {
  defaults = {
    arn = "arn:aws:logs:eu-west-1:123456789012:log-group:mocked"
  }
}

mock_resource "aws_cloudwatch_log_stream" {
  defaults = {
    arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/kinesisfirehose/events:log-stream:mocked"
  }
}
