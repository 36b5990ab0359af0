// Package check holds the tests of the deployment files in deploy/: the
// Dockerfile (statically, and built and run with podman when it is
// installed), the compose stack, the Helm chart rendered into Kubernetes API
// objects, and the dashboard and alert rules against the metrics the
// services really export.
//
// It is a module of its own so that the Helm, Kubernetes and Compose
// libraries stay out of the services' dependencies.
package check
