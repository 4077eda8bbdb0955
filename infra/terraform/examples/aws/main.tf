# natlake on AWS, the whole deployment: see docs/deploy-aws.md for the steps.

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.70"
    }
  }

  # Keep state remote and locked in production (it holds the relay's access key if you create
  # one), e.g.:
  # backend "s3" {
  #   bucket       = "my-terraform-state"
  #   key          = "natlake/terraform.tfstate"
  #   region       = "eu-central-1"
  #   use_lockfile = true
  # }
}

provider "aws" {
  region = var.region
}

module "natlake" {
  source = "../../modules/aws"

  name                = var.name
  bucket_name         = var.bucket_name
  artifacts_dir       = var.artifacts_dir
  architecture        = "arm64"
  raw_expiration_days = var.raw_expiration_days
  lake_retention_days = var.lake_retention_days
  object_lock_days    = var.object_lock_days
  kms_key_arn         = var.kms_key_arn

  lookup_invoker_arns          = var.lookup_invoker_arns
  relay_trusted_principal_arns = var.relay_trusted_principal_arns
  create_relay_user            = var.create_relay_user
  create_glue_catalog          = true
  alarm_actions                = var.alarm_actions

  normalize = {
    memory_mb = 1024
    timeout_s = 300
  }
  lookup = {
    memory_mb            = 2048
    reserved_concurrency = 10
  }

  tags = { project = "natlake" }
}
