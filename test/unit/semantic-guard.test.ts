import { guardRejects } from '../../shared/cache/semantic';

/** Both orders must agree: the guard is symmetric. */
function rejects(a: string, b: string): string | undefined {
  const ab = guardRejects(a, b);
  const ba = guardRejects(b, a);
  expect(ab === undefined).toBe(ba === undefined);
  return ab;
}

describe('guardRejects', () => {
  it.each([
    ['How do I reset my password?', 'How can I reset my password?'],
    ['What is the capital of France?', 'Tell me the capital of France'],
    [
      'Write a python function to reverse a linked list',
      'Write a Python function that reverses a linked list',
    ],
    ['flights from Paris to Rome', 'flights to Rome from Paris'],
    ['What are the health benefits of green tea?', 'What health benefits does green tea have?'],
    ['How to convert celsius to fahrenheit', 'how do I convert celsius into fahrenheit'],
    ['Summarize the plot of Hamlet', 'Give me a summary of the plot of Hamlet'],
    ['Is it safe to eat raw eggs?', 'Is eating raw eggs safe?'],
    ['Top five movies of 2020', 'Top 5 movies of 2020'],
    ['Explain recursion', 'Describe recursion'],
    ['Please explain recursion to me', 'explain recursion'],
  ])('accepts a rephrasing: %s | %s', (a, b) => {
    expect(rejects(a, b)).toBeUndefined();
  });

  it.each([
    ['order', 'flights from Paris to Rome', 'flights from Rome to Paris'],
    ['order', 'Is Python faster than Java?', 'Is Java faster than Python?'],
    ['order', 'python vs java for web apps', 'java vs python for web apps'],
    ['order', 'convert celsius to fahrenheit', 'convert fahrenheit to celsius'],
    ['order', 'Convert PDF into Word', 'Convert Word into PDF'],
    ['order', 'migrate mysql → postgres', 'migrate postgres → mysql'],
    ['order', 'should I learn algebra before geometry', 'should I learn geometry before algebra'],
  ])('rejects a reversal (%s): %s | %s', (kind, a, b) => {
    expect(rejects(a, b)).toMatch(new RegExp(`^${kind}`));
  });

  it.each([
    ['Is coffee good for you?', 'Is coffee not good for you?'],
    ['Why is my code working', "Why isn't my code working"],
    ['Why is my code working', 'Why is my code not working'.replace('not ', 'never ')],
    ['a cake recipe with eggs', 'a cake recipe without eggs'],
    ['list all fruits including apples', 'list all fruits except apples'],
    ['I can install it', 'I cannot install it'],
  ])('rejects a negation: %s | %s', (a, b) => {
    expect(rejects(a, b)).toMatch(/^negation|^contrast/);
  });

  it.each([
    ['How many calories in 100g of rice', 'How many calories in 200g of rice'],
    ['Plan a 3 day trip to Rome', 'Plan a 5 day trip to Rome'],
    ['Plan a three day trip to Rome', 'Plan a five day trip to Rome'],
    ['What happened in 1989', 'What happened in 1991'],
    ['Give me 10 ideas', 'Give me ideas'],
    ['What is 2.5 times 4', 'What is 25 times 4'],
  ])('rejects different numbers: %s | %s', (a, b) => {
    expect(rejects(a, b)).toMatch(/^number/);
  });

  it('reads number words and digits alike', () => {
    expect(rejects('Top five movies of 2020', 'Top 5 movies of 2020')).toBeUndefined();
    expect(rejects('twenty-five ways to relax', '25 ways to relax')).toBeUndefined();
    expect(rejects('three hundred words about Rome', '300 words about Rome')).toBeUndefined();
  });

  it.each([
    ['What is the capital of France?', 'What is the capital of Spain?'],
    ['Summarize the annual report of Acme Corp', 'Summarize the annual report of Globex Corp'],
    ['Explain the NASA budget', 'Explain the ESA budget'],
    ['How do I use the iPhone camera', 'How do I use the Pixel camera'],
    ['What does error E42 mean', 'What does error code mean'],
    ['Rename my_variable in the file', 'Rename other_variable in the file'],
  ])('rejects different entities: %s | %s', (a, b) => {
    expect(rejects(a, b)).toMatch(/^entity|^number/);
  });

  it('compares quoted strings', () => {
    expect(rejects('Summarize "War and Peace"', 'Summarize "Anna Karenina"')).toMatch(/^quoted/);
    expect(
      rejects("Translate 'good morning' to French", "translate 'good morning' to French"),
    ).toBeUndefined();
  });

  it('does not take a capitalised common word at the start of a sentence for a name', () => {
    expect(rejects('Describe the water cycle', 'Please describe the water cycle')).toBeUndefined();
    expect(rejects('What is the capital of France?', 'what is the capital of france')).toBeUndefined();
  });

  it.each([
    ['Should I buy Tesla stock', 'Should I sell Tesla stock'],
    ['How to increase my credit score', 'How to decrease my credit score'],
    ['what is the max value of an int', 'what is the min value of an int'],
    ['health benefits of green tea', 'health risks of green tea'],
    ['Is it safe to eat raw eggs?', 'Is it unsafe to eat raw eggs?'],
    ['Is it legal to record calls', 'Is it illegal to record calls'],
    ['a careful driver', 'a careless driver'],
    ['how to learn spanish', 'how to learn german'],
    ['reverse a list in python', 'reverse a list in rust'],
    ['convert 5 miles to km', 'convert 5 miles to meters'],
    ['When was Einstein born', 'Where was Einstein born'],
    ['Should I eat before running', 'Should I eat after running'],
  ])('rejects antonyms and category swaps: %s | %s', (a, b) => {
    expect(rejects(a, b)).toMatch(/^contrast|^order|^question/);
  });

  it('rejects the same sentence frame with its entities in another order (roles swapped)', () => {
    expect(
      guardRejects(
        'Did the Beatles influence the Rolling Stones?',
        'Did the Rolling Stones influence the Beatles?',
      ),
    ).toMatch(/^order: entities/);
    expect(
      guardRejects(
        'Copy the values of column A into column B in Excel.',
        'Copy the values of column B into column A in Excel.',
      ),
    ).toMatch(/^order/);
    // A reworded prompt has another frame: moving a clause is not a swap.
    expect(
      guardRejects('In Python, how do I read a CSV file?', 'How do I read a CSV file in Python?'),
    ).toBeUndefined();
    expect(guardRejects('What does NASA do?', 'what does NASA do')).toBeUndefined();
  });

  it('rejects a prompt that adds a qualifier', () => {
    expect(
      rejects('Write a blog post about friendship', 'Write a blog post about friendship for my grandmother'),
    ).toMatch(/^qualifier/);
    expect(rejects('best laptops', 'best laptops for students')).toMatch(/^qualifier/);
  });
});
