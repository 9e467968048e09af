// The phone's own storage (IndexedDB): the ticket list, scans waiting to upload, and who this phone let in.

const NAME = "plenary-door";
const VERSION = 1;

export const SNAPSHOT = "snapshot"; // one record per event: tickets, keys, admissions, version
export const QUEUE = "queue"; // scans decided offline, in the order they happened
export const MOVEMENTS = "movements"; // admissions and exits this phone has seen, by ticket (and workshop)

let opening = null;

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function open() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const req = indexedDB.open(NAME, VERSION);
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains(SNAPSHOT)) db.createObjectStore(SNAPSHOT, { keyPath: "event_id" });
        if (!db.objectStoreNames.contains(QUEUE)) db.createObjectStore(QUEUE, { keyPath: "seq", autoIncrement: true });
        if (!db.objectStoreNames.contains(MOVEMENTS)) db.createObjectStore(MOVEMENTS, { keyPath: "key" });
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => {
        opening = null;
        reject(req.error);
      };
    });
  }
  return opening;
}

async function run(store, mode, action) {
  const db = await open();
  const transaction = db.transaction(store, mode);
  const done = new Promise((resolve, reject) => {
    transaction.oncomplete = resolve;
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error);
  });
  const result = await request(action(transaction.objectStore(store)));
  await done;
  return result;
}

export const get = (store, key) => run(store, "readonly", (s) => s.get(key));
export const put = (store, value) => run(store, "readwrite", (s) => s.put(value));
export const remove = (store, key) => run(store, "readwrite", (s) => s.delete(key));
export const all = (store) => run(store, "readonly", (s) => s.getAll());
export const count = (store) => run(store, "readonly", (s) => s.count());
export const clear = (store) => run(store, "readwrite", (s) => s.clear());
