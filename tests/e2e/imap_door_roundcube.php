<?php
// Drives inlookup's IMAP front door with Roundcube's own IMAP library (Debian's
// roundcube-core, class rcube_imap_generic): connect, login, list folders, select, fetch
// headers and a body, logout. Usage: php imap_door_roundcube.php PORT USER PASSWORD ROUNDS
// Prints what it checked; exits 1 with the reason on the first surprise.
define('RCUBE_INSTALL_PATH', '/usr/share/roundcube/');
require_once '/usr/share/roundcube/program/lib/Roundcube/bootstrap.php';

function fail($why) {
    echo "FAIL: $why\n";
    exit(1);
}

[$_, $port, $user, $password, $rounds] = $argv;
for ($i = 0; $i < (int) $rounds; $i++) {
    $imap = new rcube_imap_generic();
    // Roundcube's default: the best mechanism offered (the door offers PLAIN and LOGIN).
    $ok = $imap->connect('127.0.0.1', $user, $password, [
        'port' => (int) $port,
        'ssl_mode' => null,
        'timeout' => 30,
        'auth_type' => null,
    ]);
    if (!$ok) {
        fail("round $i: connect/login: " . $imap->error);
    }
    $folders = $imap->listMailboxes('', '*');
    if (!is_array($folders) || !in_array('INBOX', $folders)) {
        fail("round $i: LIST: " . var_export($folders, true));
    }
    if (!$imap->select('INBOX')) {
        fail("round $i: SELECT: " . $imap->error);
    }
    $n = $imap->countMessages('INBOX');
    if ($n < 1) {
        fail("round $i: no message in INBOX");
    }
    $headers = $imap->fetchHeaders('INBOX', '1:' . $n);
    if (!is_array($headers) || count($headers) != $n) {
        fail("round $i: fetchHeaders: " . $imap->error);
    }
    $first = reset($headers);
    $body = $imap->handlePartBody('INBOX', $first->id, false, 'TEXT');
    if (strpos((string) $body, 'this is the seeded test message') === false) {
        fail("round $i: body: " . var_export($body, true));
    }
    $imap->closeConnection();
    echo "round $i: " . count($folders) . " folders, $n messages, subject "
        . var_export($first->subject, true) . "\n";
}
echo "roundcube: ok\n";
