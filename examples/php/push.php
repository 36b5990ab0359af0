<?php
// Push one message to a browser through push-server's HTTP/JSON API, with
// PHP's own HTTP stream (no extension needed).
//
//   php push.php session <session id> <event> [<data JSON>]
//   php push.php openid <openid> <event> [<data JSON>]
//
// PUSH_API_URL: the API (default http://127.0.0.1:9091); GRPC_AUTH_TOKEN:
// push-server's token, if it has one. Prints the answer's JSON; exits 1 when
// the server refuses the push, 2 on a usage error.

function scanlogin_push(string $apiURL, string $token, array $push): array
{
    $headers = "Content-Type: application/json\r\n";
    if ($token !== '') {
        $headers .= "Authorization: Bearer $token\r\n";
    }
    $context = stream_context_create(['http' => [
        'method' => 'POST',
        'header' => $headers,
        'content' => json_encode($push, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR),
        'timeout' => 5,
        'ignore_errors' => true, // read the body of an error answer too
    ]]);
    $body = @file_get_contents(rtrim($apiURL, '/') . '/v1/push', false, $context);
    if ($body === false) {
        throw new RuntimeException('push-server unreachable: ' . (error_get_last()['message'] ?? ''));
    }
    // The answer's status line and headers (PHP 8.4 has a function for them).
    $headers = function_exists('http_get_last_response_headers') ? http_get_last_response_headers() : $http_response_header;
    preg_match('#^HTTP/\S+ (\d{3})#', $headers[0] ?? '', $m);
    return [(int)($m[1] ?? 0), $body];
}

if ($argc < 4 || $argc > 5 || !in_array($argv[1], ['session', 'openid'], true)) {
    fwrite(STDERR, "usage: php push.php session|openid <id> <event> [<data JSON>]\n");
    exit(2);
}
try {
    $data = json_decode($argv[4] ?? 'null', false, 512, JSON_THROW_ON_ERROR);
} catch (JsonException $e) {
    fwrite(STDERR, "data is not JSON: {$e->getMessage()}\n");
    exit(2);
}
$push = [$argv[1] => $argv[2], 'event' => $argv[3], 'data' => $data];

try {
    [$status, $body] = scanlogin_push(getenv('PUSH_API_URL') ?: 'http://127.0.0.1:9091', getenv('GRPC_AUTH_TOKEN') ?: '', $push);
} catch (RuntimeException $e) {
    fwrite(STDERR, $e->getMessage() . "\n");
    exit(1);
}
echo $body, "\n";
if ($status !== 200) {
    // {"code": "invalid_argument" | "unauthenticated" | "not_found" | "unavailable", "message": ...}
    fwrite(STDERR, "push refused: HTTP $status\n");
    exit(1);
}
