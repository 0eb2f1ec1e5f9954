// aws-cdk-lib's assertions, resolved from this package's own node_modules for the tests in
// test/infra/deploy/cdk/ (which sit outside this package and cannot resolve aws-cdk-lib themselves).
export { Match, Template } from 'aws-cdk-lib/assertions'
